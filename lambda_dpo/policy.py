"""The trainable policy on top of the reference weights (a LoRA adapter or every weight), and its optimizer."""

from __future__ import annotations

from pathlib import Path

import torch

from lambda_dpo.modeling import (
    add_lora,
    peft_quietly,
)
from lambda_dpo.train_config import OptimConfig, TrainConfig


def load_policy(config: TrainConfig, base, checkpoint: Path | None):
    """The trainable policy on top of ``base``: a LoRA adapter (fresh or from ``checkpoint``) or
    the full model (from ``checkpoint`` when resuming)."""
    if config.model.lora.enabled:
        if checkpoint is None:
            return add_lora(base, config.model.lora)
        from peft import PeftModel

        with peft_quietly():
            return PeftModel.from_pretrained(base, checkpoint, is_trainable=True)
    if checkpoint is None:
        return base
    load_full_weights(base, Path(checkpoint))
    return base


def load_full_weights(model, directory: Path) -> None:
    """Load a full fine-tune's safetensors (one file or shards) into ``model`` in place."""
    from safetensors.torch import load_file

    files = sorted(directory.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory}: no model*.safetensors weights")
    expected = set(model.state_dict())
    loaded: set[str] = set()
    for file in files:
        weights = load_file(file)
        unexpected = set(weights) - expected
        if unexpected:
            raise ValueError(f"{file}: weights the model does not have: {sorted(unexpected)[:5]}")
        model.load_state_dict(weights, strict=False)
        loaded |= set(weights)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    missing = expected - loaded - tied
    if missing:
        raise ValueError(f"{directory}: weights missing from the checkpoint: {sorted(missing)[:5]}")


def make_optimizer(model, optim: OptimConfig, *, learning_rate: float | None = None, total_steps: int | None = None):
    from transformers import get_cosine_schedule_with_warmup

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate or optim.learning_rate, weight_decay=optim.weight_decay)
    total = total_steps or optim.max_steps
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, int(optim.warmup_ratio * total), total)
    return optimizer, lr_schedule
