"""Per-dimension listwise targets from ratings (docs/method.md, item 4).

Ratings are ``[..., m, N]`` floats with NaN for N/A. A response that is N/A in a dimension is
left out of that dimension: it gets target 0 and mask False there, never the worst rating.
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_RATED_RESPONSES = 2


def dimension_available(target_mask: Tensor) -> Tensor:
    """``[..., m]`` bool: the dimension has at least two rated responses (it can rank something).

    target_mask: ``[..., m, N]`` bool, True where a response is rated in that dimension.
    """
    return target_mask.sum(dim=-1) >= MIN_RATED_RESPONSES


def ratings_to_targets(
    ratings: Tensor, *, temperature: float = 1.0, response_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Targets ``p_k(i) = softmax_i(s_{k,i} / T)`` over the responses rated in dimension k.

    Args:
        ratings: ``[..., m, N]`` float, NaN where a rating is N/A.
        temperature: T > 0; smaller T sharpens the target towards the best-rated response.
        response_mask: ``[..., N]`` bool, False for padded response slots.

    Returns:
        ``(targets, target_mask)``, both ``[..., m, N]``: targets sum to 1 over the rated
        responses of each dimension (all zeros where nothing is rated); target_mask is True
        where a response is rated.
    """
    if temperature <= 0:
        raise ValueError(f"target_temperature must be > 0, got {temperature}")
    rated = ~torch.isnan(ratings)
    if response_mask is not None:
        rated = rated & response_mask.bool().unsqueeze(-2)
    logits = torch.where(rated, ratings / temperature, torch.full_like(ratings, float("-inf")))
    # A dimension with no rated response would softmax to NaN; give it a finite dummy row.
    logits = logits.masked_fill(~rated.any(dim=-1, keepdim=True), 0.0)
    targets = torch.softmax(logits, dim=-1).masked_fill(~rated, 0.0)
    return targets, rated
