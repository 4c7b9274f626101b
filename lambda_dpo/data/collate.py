"""Batching listwise examples: B prompts × N responses become B·N sequences (never B·m·N)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from lambda_dpo.data.encoding import EncodedExample
from lambda_dpo.preferences import ratings_to_targets

IGNORE_INDEX = -100


def longest_first(examples: Sequence[EncodedExample]) -> list[EncodedExample]:
    """``examples`` ordered by their longest sequence, longest first: batches of similar lengths pad
    little, and the batch that needs the most memory comes first (a lack of memory shows at once).
    For passes whose results are keyed by example (reference log-probs, evaluation)."""
    return sorted(examples, key=lambda e: -(len(e.prompt_ids) + max(len(r) for r in e.response_ids)))


class ListwiseCollator:
    """Collate :class:`EncodedExample` into model inputs and preference targets.

    Output (B prompts, N = the largest response count in the batch, L = longest sequence,
    m dimensions):

    - ``input_ids``, ``attention_mask``, ``labels``: ``[B·N, L]``, row ``b·N + i`` is prompt b
      followed by response i, right-padded; labels are IGNORE_INDEX on prompt and padding, so
      only response tokens are scored. A padded response slot holds the prompt alone (no label),
      which keeps every row attendable.
    - ``response_mask``: ``[B, N]`` bool, False for padded slots.
    - ``response_lengths``: ``[B, N]`` response token counts (0 for padded slots).
    - ``ratings``: ``[B, m, N]`` float (NaN = N/A or padding).
    - ``targets``, ``target_mask``: ``[B, m, N]`` from :func:`ratings_to_targets`.
    - ``example_keys``: ``[B]`` long.
    - ``layout`` (when the collator has one): how the forward pass lays the rows out
      (lambda_dpo.data.packing).
    """

    def __init__(self, pad_token_id: int, *, target_temperature: float = 1.0, layout=None):
        self.pad_token_id = pad_token_id
        self.target_temperature = target_temperature
        self.layout = layout  # a lambda_dpo.data.packing.LayoutSettings, carried in the batch as "layout"

    def __call__(self, examples: Sequence[EncodedExample]) -> dict[str, torch.Tensor]:
        batch = len(examples)
        slots = max(len(example.response_ids) for example in examples)
        dimensions = examples[0].ratings.shape[0]
        rows = [
            (example.prompt_ids, example.response_ids[i] if i < len(example.response_ids) else ())
            for example in examples
            for i in range(slots)
        ]
        length = max(len(prompt) + len(response) for prompt, response in rows)
        input_ids = torch.full((batch * slots, length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch * slots, length), dtype=torch.long)
        labels = torch.full((batch * slots, length), IGNORE_INDEX, dtype=torch.long)
        for row, (prompt, response) in enumerate(rows):
            sequence = torch.tensor(prompt + response, dtype=torch.long)
            input_ids[row, : len(sequence)] = sequence
            attention_mask[row, : len(sequence)] = 1
            labels[row, len(prompt) : len(sequence)] = sequence[len(prompt) :]

        ratings = np.full((batch, dimensions, slots), np.nan)
        response_mask = torch.zeros((batch, slots), dtype=torch.bool)
        for b, example in enumerate(examples):
            ratings[b, :, : len(example.response_ids)] = example.ratings
            response_mask[b, : len(example.response_ids)] = True
        ratings = torch.as_tensor(ratings, dtype=torch.float32)
        targets, target_mask = ratings_to_targets(ratings, temperature=self.target_temperature, response_mask=response_mask)
        layout = {"layout": self.layout} if self.layout is not None else {}
        return {
            **layout,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "response_mask": response_mask,
            "response_lengths": (labels != IGNORE_INDEX).sum(dim=-1).view(batch, slots),
            "ratings": ratings,
            "targets": targets,
            "target_mask": target_mask,
            "example_keys": torch.tensor([example.key for example in examples], dtype=torch.long),
        }
