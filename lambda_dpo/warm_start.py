"""The optional SFT warm start: NLL on each prompt's best response under its λ, before the preference stage."""

from __future__ import annotations

import torch
from torch import Tensor

from lambda_dpo import run_setup
from lambda_dpo.loss import mixed_target
from lambda_dpo.modeling import (
    add_lora,
    is_lora,
    sequence_logps,
)
from lambda_dpo.policy import make_optimizer
from lambda_dpo.reporting import track
from lambda_dpo.run_setup import RunSetup, batch_order


def sft_warm_start(base, setup: RunSetup):
    """NLL on each prompt's best response under its λ's mixed target (through a LoRA adapter
    merged back into the base when LoRA is on, so the reference is the warm-started model).

    A λ-conditioned run learns each response after both the conditioned and the plain prompt:
    the policy reads the first and its reference the second, so the warm start must know both,
    or the policy's log-ratio starts from whatever the unseen form happens to give.
    """
    config, conditioner = setup.config, setup.conditioners["train"]
    model = add_lora(base, config.model.lora) if config.model.lora.enabled else base
    model.train()
    optimizer, lr_schedule = make_optimizer(model, config.optim, learning_rate=config.sft.learning_rate, total_steps=config.sft.steps)
    prompt_forms = [None] if conditioner is None else [conditioner, None]
    for step in track(setup.reporter, range(config.sft.steps), total=config.sft.steps, description="SFT warm start"):
        indices, epoch = batch_order(len(setup.encoded["train"]), config.sft.batch_size, config.seed + 1, step)
        for form in prompt_forms:
            batch, lambdas = run_setup.training_batch(setup, indices, epoch, form)
            loss = best_response_nll(model, batch, lambdas, setup.device, setup.autocast) / len(prompt_forms)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.max_grad_norm)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return model.merge_and_unload() if is_lora(model) else model


def best_response_nll(model, batch, lambdas, device, autocast) -> Tensor:
    """Mean token NLL of each prompt's best response under its λ's mixed target."""
    preference, eligible = mixed_target(batch["targets"], lambdas, response_mask=batch["response_mask"], target_mask=batch["target_mask"])
    best = preference.masked_fill(~eligible, -1.0).argmax(-1)
    rows = torch.arange(len(lambdas)) * batch["response_mask"].shape[1] + best
    with autocast:
        logits = model(input_ids=batch["input_ids"][rows].to(device), attention_mask=batch["attention_mask"][rows].to(device), use_cache=False).logits
    sums, counts = sequence_logps(logits, batch["labels"][rows].to(device))
    return -sums.sum() / counts.sum().clamp(min=1)
