"""Tokenisation of listwise examples: the prompt once, each response once.

The prompt goes through the tokenizer's chat template when it has one; the policy and the
reference see the same token ids, and responses end with the EOS token. A prompt longer than
its budget loses the start of its content, never the template's own tokens (its system turn and
turn markers); what was cut is counted in a :class:`TruncationReport`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lambda_dpo.data.records import ListwiseExample, Prompt


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of one prompt and its N responses; ratings ``[m, N]`` (NaN = N/A)."""

    key: int
    prompt_ids: tuple[int, ...]
    response_ids: tuple[tuple[int, ...], ...]
    ratings: np.ndarray


_SYSTEM_MARK = "\x1eSYSTEM\x1e"
_CONTENT_MARK = "\x1eCONTENT\x1e"


@functools.lru_cache(maxsize=16)
def default_system_prompt(tokenizer) -> str | None:
    """The system message a chat template adds when the messages have none (SmolLM2: "You are a
    helpful AI assistant named SmolLM, …"), or None when it adds nothing."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    user = [{"role": "user", "content": _CONTENT_MARK}]
    plain = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    try:
        with_system = tokenizer.apply_chat_template([{"role": "system", "content": _SYSTEM_MARK}, *user], tokenize=False, add_generation_prompt=True)
    except Exception:  # a template that refuses system messages has no default either
        return None
    before, _, after = with_system.partition(_SYSTEM_MARK)
    if _SYSTEM_MARK not in with_system or not (plain.startswith(before) and plain.endswith(after)) or len(plain) <= len(before) + len(after):
        return None
    return plain[len(before) : len(plain) - len(after)]


def as_messages(prompt: Prompt, *, system: str | None = None, default_system: str | None = None) -> list[dict]:
    """Chat messages of ``prompt``; ``system`` joins the prompt's own system message, or else the
    template's default one (``default_system``), rather than replacing it."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if not system:
        return messages
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{system}"
        return messages
    content = f"{default_system}\n\n{system}" if default_system else system
    return [{"role": "system", "content": content}] + messages


def render_prompt(prompt: Prompt, tokenizer, *, system: str | None = None) -> str:
    """The prompt text the model is conditioned on, ending where the response begins.

    With a chat template: the template with the generation prompt; ``system`` (e.g. a λ preamble)
    is added after the system message the prompt or the template already has. Without a chat
    template: messages as ``role: content`` lines followed by ``assistant:`` (a plain string
    prompt stays as it is).
    """
    if getattr(tokenizer, "chat_template", None):
        messages = as_messages(prompt, system=system, default_system=default_system_prompt(tokenizer) if system else None)
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if isinstance(prompt, str) and not system:
        return prompt
    lines = [f"{m['role']}: {m['content']}" for m in as_messages(prompt, system=system)]
    return "\n".join(lines) + "\nassistant:"


def tokenize_prompts(texts: Sequence[str], tokenizer) -> list[list[int]]:
    """Token ids of rendered prompts (special tokens come from the template when there is one)."""
    templated = bool(getattr(tokenizer, "chat_template", None))
    return tokenizer(list(texts), add_special_tokens=not templated)["input_ids"] if texts else []


def common_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    length = 0
    for a, b in zip(first, second):
        if a != b:
            break
        length += 1
    return length


@dataclass(frozen=True)
class PromptFrame:
    """The tokens a template puts around any content: ``head`` before it, ``tail`` after it."""

    ids: tuple[int, ...]  # the frame around a one-character content, to measure each prompt's head against
    head: int
    tail: int

    @classmethod
    def of(cls, tokenizer, *, system: str | None = None) -> "PromptFrame":
        # Two contents that share no first or last character: what they share is the frame.
        first, second = tokenize_prompts([render_prompt(text, tokenizer, system=system) for text in ("a", "Zq z")], tokenizer)
        head = common_prefix(first, second)
        tail = common_prefix(first[::-1], second[::-1])
        return cls(tuple(first), head, min(tail, len(first) - head))

    @property
    def fixed(self) -> int:
        return self.head + self.tail

    def fit(self, ids: Sequence[int], budget: int) -> tuple[list[int], bool]:
        """``ids`` within ``budget`` tokens: the template's head and the end (content and tail);
        returns the ids and whether anything was cut."""
        ids = list(ids)
        if len(ids) <= budget:
            return ids, False
        head = min(self.head, common_prefix(ids, self.ids))  # a prompt with its own system turn shares less
        return ids[:head] + ids[len(ids) - (budget - head) :], True


def check_prompt_budget(frame: PromptFrame, budget: int, *, key: str = "data.max_prompt_length") -> None:
    if budget <= frame.fixed:
        raise ValueError(f"{key} is {budget}, but the chat template alone takes {frame.fixed} tokens (its system turn and turn markers): "
                         f"every prompt would be cut into the template; raise {key} above {frame.fixed} (plus the longest question you need)")


@dataclass
class TruncationReport:
    """How many prompts and responses encoding cut to fit the length limits."""

    prompts: int = 0
    prompts_cut: int = 0
    responses: int = 0
    responses_cut: int = 0

    def summary(self, name: str) -> str | None:
        """A warning line when anything was cut, else None."""
        if not (self.prompts_cut or self.responses_cut):
            return None
        parts = []
        if self.prompts_cut:
            parts.append(f"{self.prompts_cut} of {self.prompts} prompts ({self.prompts_cut / self.prompts:.1%}) lost the start of their text to data.max_prompt_length")
        if self.responses_cut:
            parts.append(f"{self.responses_cut} of {self.responses} responses ({self.responses_cut / self.responses:.1%}) lost their end to data.max_length")
        return f"{name}: " + "; ".join(parts)


def encode_with_report(
    examples: Sequence[ListwiseExample],
    tokenizer,
    *,
    max_prompt_length: int,
    max_length: int,
) -> tuple[list[EncodedExample], TruncationReport]:
    """Tokenise every prompt and every response exactly once (two batched tokenizer calls).

    A prompt longer than ``max_prompt_length`` keeps the template's head and its last tokens (the
    question usually ends the prompt); a budget that cannot hold the template's fixed part is an
    error. Responses are cut so that prompt + response fits ``max_length``.
    """
    if max_length <= max_prompt_length:
        raise ValueError(f"max_length ({max_length}) must be larger than max_prompt_length ({max_prompt_length})")
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; responses need one to mark their end")
    frame = PromptFrame.of(tokenizer)
    check_prompt_budget(frame, max_prompt_length)
    prompts = tokenize_prompts([render_prompt(example.prompt, tokenizer) for example in examples], tokenizer)
    flat_responses = [response for example in examples for response in example.responses]
    responses = iter(tokenizer(flat_responses, add_special_tokens=False)["input_ids"])
    report = TruncationReport(prompts=len(examples), responses=len(flat_responses))
    encoded = []
    for example, prompt_ids in zip(examples, prompts):
        prompt_ids, cut = frame.fit(prompt_ids, max_prompt_length)
        report.prompts_cut += cut
        budget = max_length - len(prompt_ids)
        response_ids = []
        for _ in example.responses:
            ids = next(responses) + [tokenizer.eos_token_id]
            report.responses_cut += len(ids) > budget
            response_ids.append(tuple(ids[:budget]))
        encoded.append(EncodedExample(example.key, tuple(prompt_ids), tuple(response_ids), example.ratings))
    return encoded, report


def encode_examples(examples: Sequence[ListwiseExample], tokenizer, *, max_prompt_length: int, max_length: int) -> list[EncodedExample]:
    """:func:`encode_with_report` without the report."""
    return encode_with_report(examples, tokenizer, max_prompt_length=max_prompt_length, max_length=max_length)[0]
