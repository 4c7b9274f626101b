"""The bf16 agreement check of the packed and padded layouts, shared by the tiny and the SmolLM2 tests."""

from __future__ import annotations

import copy

import torch

from lambda_dpo.data.packing import LayoutSettings
from lambda_dpo.modeling import bf16_logp_tolerance, response_logps
from lambda_dpo.precision import autocast_context

PRECISIONS = ("bf16 weights", "bf16 autocast")


def rms(values) -> float:
    return float(values.pow(2).mean().sqrt())


def assert_layouts_agree_in_bf16(model, batch, pad_token_id: int, precision: str, *, max_tokens_per_row: int = 64) -> float:
    """Both layouts in bf16 (``precision``: the weights cast, or autocast over fp32 weights) stay
    within :func:`bf16_logp_tolerance` (rms over responses) of fp32, so within √2 of it of each
    other, and no single response strays past twice it. ``model`` is in fp32; returns the tolerance."""
    packed = {**batch, "layout": LayoutSettings("shared_prefix", max_tokens_per_row, pad_token_id)}
    mask = batch["response_mask"]
    tolerance = bf16_logp_tolerance(model, batch)
    in_precision = copy.deepcopy(model).to(torch.bfloat16) if precision == "bf16 weights" else model
    with torch.no_grad():
        exact = response_logps(model, batch).mean[mask]
        with autocast_context(torch.device("cpu"), torch.bfloat16 if precision == "bf16 autocast" else None):
            rounded = {name: response_logps(in_precision, layout).mean[mask] for name, layout in (("padded", batch), ("packed", packed))}
    for name, values in rounded.items():
        assert values.dtype == torch.float32 and 0 < rms(values - exact) <= tolerance, (name, rms(values - exact), tolerance)
    gap = rounded["packed"] - rounded["padded"]
    assert rms(gap) <= 2**0.5 * tolerance and gap.abs().max() <= 2 * tolerance, (rms(gap), float(gap.abs().max()), tolerance)
    return tolerance
