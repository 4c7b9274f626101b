"""Numeric precision: the weights' dtype, the forward's autocast, and what this device can run.

Two settings decide it (docs/training.md, "Precision"):
- ``model.dtype``: the dtype the weights are stored and loaded in (``auto``: bf16 on a GPU, fp32 on CPU);
- ``model.autocast``: the dtype matmuls run in inside the forward (``auto``: bf16 on a GPU, none on CPU).

A LoRA adapter is kept in fp32 whatever the base's dtype (peft upcasts it), so the trained weights
never live in bf16. float16 training is refused: it needs loss scaling, which lambda-dpo does not do.
"""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16}
BF16_UNIT_ROUNDOFF = 2.0**-8  # 8 significant bits: a rounding moves a value by at most this fraction of it


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The weights' dtype for ``model.dtype`` on ``device``."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def resolve_autocast(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``model.autocast`` on ``device``; None: no autocast."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return AUTOCAST_DTYPES.get(name)


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` in ``dtype`` on ``device``, or nothing when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def check_precision(weights: torch.dtype, autocast: torch.dtype | None, device: torch.device) -> None:
    """One-line ValueError when ``device`` cannot run the configured dtypes: a GPU without bf16, or
    an op this torch build lacks in that dtype (a small forward and backward is tried)."""
    for key, dtype in (("model.dtype", weights), ("model.autocast", autocast)):
        if dtype is None or dtype == torch.float32:
            continue
        name = next(name for name, value in DTYPES.items() if value == dtype)
        if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise ValueError(f"{key} {name}: {torch.cuda.get_device_name(device)} has no bf16 arithmetic "
                             f"(it needs compute capability 8.0 or newer); set {key}={'float32' if key == 'model.dtype' else 'none'}")
        try:
            _probe(dtype, device, autocast=key == "model.autocast")
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"{key} {name} cannot run on {device} with this torch build ({reason}); set "
                             f"{key}={'float32' if key == 'model.dtype' else 'none'}") from None


def _probe(dtype: torch.dtype, device: torch.device, *, autocast: bool) -> None:
    """A linear layer, attention and a log-softmax, forward and backward, in ``dtype``: the ops a
    training step needs, in seconds' worth of nothing."""
    generator = torch.Generator().manual_seed(0)
    stored = torch.float32 if autocast else dtype
    layer = torch.nn.Linear(8, 8).to(device=device, dtype=stored)
    states = torch.randn(1, 2, 4, 8, generator=generator).to(device=device, dtype=stored)
    with autocast_context(device, dtype if autocast else None):
        hidden = layer(states)
        attended = torch.nn.functional.scaled_dot_product_attention(hidden, hidden, hidden, is_causal=True)
        loss = attended.float().log_softmax(-1).sum()
    loss.backward()


def check_trainable(weights_name: str) -> None:
    """float16 weights cannot be trained here without loss scaling: refused before anything loads."""
    if weights_name == "float16":
        raise ValueError("model.dtype float16: training in float16 needs loss scaling, which lambda-dpo does not do; "
                         "use model.dtype=bfloat16 (or float32)")
