"""The bf16 agreement check of the packed and padded layouts, shared by the tiny and the SmolLM2 tests."""

from __future__ import annotations

from lambda_dpo.modeling import BF16_PRECISIONS, bf16_agreement

PRECISIONS = BF16_PRECISIONS


def assert_layouts_agree_in_bf16(model, batch, pad_token_id: int, precision: str, *, max_tokens_per_row: int = 64) -> float:
    """Both layouts in bf16 stay within the tolerance (rms over responses) of fp32, so within √2
    of it of each other, and no single response strays past twice it. Returns the tolerance."""
    agreement = bf16_agreement(model, batch, pad_token_id, precision, max_tokens_per_row=max_tokens_per_row)
    tolerance = agreement["tolerance"]
    assert agreement["dtype"] == "float32", agreement
    for name in ("padded", "packed"):
        assert 0 < agreement[name] <= tolerance, (name, agreement)
    assert agreement["gap"] <= 2**0.5 * tolerance and agreement["gap_max"] <= 2 * tolerance, agreement
    return tolerance
