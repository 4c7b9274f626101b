"""Batched decoding: responses to many rendered prompts at once, greedy or sampled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int  # generated tokens, the end-of-sequence token included when there is one
    finished: bool  # ended with the end-of-sequence token, not cut at max_new_tokens


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
    """Responses to rendered prompts (``render_prompt``'s text), left-padded into one batch.

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
    was_training = model.training
    model.eval()
    output = model.generate(
        **inputs, max_new_tokens=max_new_tokens, num_return_sequences=num_return_sequences,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **sampling,
    )
    model.train(was_training)
    generations = []
    for row in output[:, inputs["input_ids"].shape[1] :].tolist():
        ends = [i for i, token in enumerate(row) if token == tokenizer.eos_token_id]
        kept = row[: ends[0] + 1] if ends else row
        text = tokenizer.decode(kept, skip_special_tokens=True).strip()
        generations.append(Generation(text, len(kept), bool(ends)))
    return generations
