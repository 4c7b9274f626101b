"""Tokenisation of listwise examples: the prompt once, each response once.

The prompt goes through the tokenizer's chat template when it has one; the policy and the
reference see the same token ids, and responses end with the EOS token.
"""

from __future__ import annotations

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


def as_messages(prompt: Prompt, *, system: str | None = None) -> list[dict]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system:
        messages = [{"role": "system", "content": system}] + messages
    return messages


def render_prompt(prompt: Prompt, tokenizer, *, system: str | None = None) -> str:
    """The prompt text the model is conditioned on, ending where the response begins.

    With a chat template: the template with the generation prompt. Without one: messages as
    ``role: content`` lines followed by ``assistant:`` (a plain string prompt stays as it is).
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(as_messages(prompt, system=system), tokenize=False, add_generation_prompt=True)
    if isinstance(prompt, str) and not system:
        return prompt
    lines = [f"{m['role']}: {m['content']}" for m in as_messages(prompt, system=system)]
    return "\n".join(lines) + "\nassistant:"


def encode_examples(
    examples: Sequence[ListwiseExample],
    tokenizer,
    *,
    max_prompt_length: int,
    max_length: int,
) -> list[EncodedExample]:
    """Tokenise every prompt and every response exactly once (two batched tokenizer calls).

    Prompts longer than ``max_prompt_length`` keep their last tokens (the question usually ends
    the prompt); responses are cut so that prompt + response fits ``max_length``.
    """
    if max_length <= max_prompt_length:
        raise ValueError(f"max_length ({max_length}) must be larger than max_prompt_length ({max_prompt_length})")
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; responses need one to mark their end")
    templated = bool(getattr(tokenizer, "chat_template", None))
    prompts = tokenizer(
        [render_prompt(example.prompt, tokenizer) for example in examples], add_special_tokens=not templated
    )["input_ids"]
    flat_responses = [response for example in examples for response in example.responses]
    responses = iter(tokenizer(flat_responses, add_special_tokens=False)["input_ids"])
    encoded = []
    for example, prompt_ids in zip(examples, prompts):
        prompt_ids = tuple(prompt_ids[-max_prompt_length:])
        budget = max_length - len(prompt_ids)
        response_ids = tuple(tuple((next(responses) + [tokenizer.eos_token_id])[:budget]) for _ in example.responses)
        encoded.append(EncodedExample(example.key, prompt_ids, response_ids, example.ratings))
    return encoded
