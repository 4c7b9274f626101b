"""Batched decoding: responses to many rendered prompts at once, greedy or sampled.

Two paths, one result:

- :func:`greedy_generations` (scoring by generation, ``generate``): prompts grouped by their token
  length, large batches, and each row dropped from its batch (and from the KV cache) the step it
  ends, so a batch costs what its unfinished rows cost;
- :func:`generate_batch`: one left-padded batch through transformers' ``generate`` (sampling, as
  ``data build-verifiable`` does, whose shipped set must rebuild to the same tokens).

Greedy decoding through either gives the same tokens (``tests/unit/test_decoding.py``, and
``benchmarks/generation_speed.py`` on the real model's held-out prompts).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int  # generated tokens, the end-of-sequence token included when there is one
    finished: bool  # ended with the end-of-sequence token, not cut at max_new_tokens


def _encode_prompts(tokenizer, prompt_texts: Sequence[str]) -> list[list[int]]:
    templated = bool(getattr(tokenizer, "chat_template", None))  # the template already holds the special tokens
    return [tokenizer(text, add_special_tokens=not templated)["input_ids"] for text in prompt_texts]


def _generation(tokenizer, tokens: list[int]) -> Generation:
    ends = [i for i, token in enumerate(tokens) if token == tokenizer.eos_token_id]
    kept = tokens[: ends[0] + 1] if ends else tokens
    return Generation(tokenizer.decode(kept, skip_special_tokens=True).strip(), len(kept), bool(ends))


@contextlib.contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def generate_batch(
    model,
    tokenizer,
    prompt_texts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    num_return_sequences: int = 1,
    device: torch.device | None = None,
) -> list[Generation]:
    """Responses to rendered prompts (``render_prompt``'s text), left-padded into one batch and
    decoded by transformers' ``generate``.

    Greedy when ``temperature`` is 0, else sampled from torch's global RNG (seed it first).
    Returns ``num_return_sequences`` generations per prompt, prompt by prompt.
    """
    device = device or next(model.parameters()).device
    templated = bool(getattr(tokenizer, "chat_template", None))
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation continues each row from its end
    try:
        inputs = tokenizer(list(prompt_texts), return_tensors="pt", padding=True, add_special_tokens=not templated).to(device)
    finally:
        tokenizer.padding_side = side
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    with _eval_mode(model):
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, num_return_sequences=num_return_sequences,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **sampling,
        )
    return [_generation(tokenizer, row) for row in output[:, inputs["input_ids"].shape[1] :].tolist()]


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size``, longest first, so that each batch
    pads its prompts little."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@torch.no_grad()
def greedy_generations(
    model,
    tokenizer,
    prompt_texts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device | None = None,
    merge: bool = True,
    track: Callable = lambda iterable, total, description: iterable,
) -> list[Generation]:
    """Greedy responses to rendered prompts, in the prompts' order.

    Prompts are batched by token length (:func:`length_batches`); a row leaves its batch, and the KV
    cache, the step it emits the end-of-sequence token. With ``merge`` a LoRA policy decodes through
    a merged copy of its weights (:func:`decoding_model`). ``track(iterable, total, description)``
    shows progress over the batches.
    """
    device = device or next(model.parameters()).device
    encoded = _encode_prompts(tokenizer, prompt_texts)
    results: list[Generation | None] = [None] * len(encoded)
    batches = length_batches([len(ids) for ids in encoded], batch_size)
    with decoding_model(model, merge=merge) as decoder:
        for batch in track(batches, total=len(batches), description=f"generating ({len(encoded)} prompts, batches of up to {batch_size})"):
            for index, tokens in zip(batch, _greedy_batch(decoder, [encoded[i] for i in batch], tokenizer, max_new_tokens, device)):
                results[index] = _generation(tokenizer, tokens)
    return results


def _greedy_batch(model, prompts: list[list[int]], tokenizer, max_new_tokens: int, device) -> list[list[int]]:
    """The new tokens of each prompt: the same arithmetic as ``generate``'s greedy search (left
    padding, positions counted from each row's first real token, logits of the last position only),
    with finished rows removed from the batch."""
    width = max(len(ids) for ids in prompts)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts], device=device)
    attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=device)
    positions = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    # generate() drops a mask with no padding (attention is then plainly causal); so do we, for the same sums.
    mask_of = (lambda mask: mask) if (attention_mask == 0).any() else (lambda mask: None)
    cache = preallocated_cache(model.config, width + max_new_tokens)
    rows = torch.arange(len(prompts), device=device)  # batch row → prompt
    new_tokens: list[list[int]] = [[] for _ in prompts]
    for step in range(max_new_tokens):
        logits = model(input_ids=input_ids, attention_mask=mask_of(attention_mask), position_ids=positions, use_cache=True, logits_to_keep=1,
                       **{_cache_keyword(model): cache}).logits
        chosen = logits[:, -1, :].float().argmax(-1)
        for row, token in zip(rows.tolist(), chosen.tolist()):
            new_tokens[row].append(token)
        going = chosen != tokenizer.eos_token_id
        if step + 1 == max_new_tokens or not going.any():
            break
        if not going.all():
            kept = going.nonzero().squeeze(-1)
            cache.batch_select_indices(kept)
            rows, chosen, attention_mask, positions = rows[kept], chosen[kept], attention_mask[kept], positions[kept]
        input_ids = chosen[:, None]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(rows), 1)], dim=-1)
        positions = positions[:, -1:] + 1
    return new_tokens


def preallocated_cache(config, capacity: int):
    """A KV cache whose layers write into buffers of ``capacity`` positions allocated at the first
    step: transformers' DynamicCache concatenates every layer's whole cache at every step, which
    was 40% of a decoding step on 2 CPU cores at 64 rows."""
    from transformers.cache_utils import Cache, DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def lazy_initialization(self, key_states, value_states) -> None:
            super().lazy_initialization(key_states, value_states)
            batch, heads, _, width = key_states.shape
            self.key_buffer = key_states.new_empty(batch, heads, capacity, width)
            self.value_buffer = value_states.new_empty(batch, value_states.shape[1], capacity, value_states.shape[-1])
            self.length = 0

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            self.key_buffer[:, :, self.length : end] = key_states
            self.value_buffer[:, :, self.length : end] = value_states
            self.length = end
            self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
            return self.keys, self.values

        def batch_select_indices(self, indices) -> None:
            if self.is_initialized:  # only the filled positions are copied
                self.key_buffer, self.value_buffer = (_select_rows(buffer, indices, self.length) for buffer in (self.key_buffer, self.value_buffer))
                self.keys, self.values = self.key_buffer[:, :, : self.length], self.value_buffer[:, :, : self.length]

    return Cache(layers=[PreallocatedLayer() for _ in range(config.num_hidden_layers)])


def _select_rows(buffer, rows, filled: int):
    kept = buffer.new_empty(len(rows), *buffer.shape[1:])
    kept[:, :, :filled] = buffer[rows, :, :filled]
    return kept


def _cache_keyword(model) -> str:
    """The forward argument that takes the KV cache (``cache`` since transformers 5.x's rename)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


@contextlib.contextmanager
def decoding_model(model, *, merge: bool = True) -> Iterator[torch.nn.Module]:
    """The model to decode with, in eval mode: a LoRA policy's adapter merged into a copy of its
    weights (one matmul per layer instead of three), anything else as it is. The copy is dropped
    on exit; the policy itself is never modified."""
    from lambda_dpo.modeling import is_lora

    if not (merge and is_lora(model)):
        with _eval_mode(model):
            yield model
        return
    merged = copy.deepcopy(model).merge_and_unload().eval()
    try:
        yield merged
    finally:
        del merged
