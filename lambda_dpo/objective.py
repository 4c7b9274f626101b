"""The training objective a config names, applied to one batch's log-probs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import Tensor

import torch

from lambda_dpo.config import NON_NEGATIVE, POSITIVE, check_settings, setting
from lambda_dpo.loss import best_worst_pairs, dpo_loss, lambda_dpo_loss, log_odds, mixed_target, orpo_loss, simpo_loss
from lambda_dpo.modeling import REDUCTIONS, ResponseLogps

LOSSES = ("lambda_dpo", "dpo", "simpo", "orpo")
PAIRWISE_LOSSES = ("dpo", "simpo", "orpo")  # they use two responses per prompt: only those are forwarded in training


@dataclass
class LossConfig:
    """Which preference loss to train with (docs/method.md)."""

    name: str = setting("lambda_dpo", help='lambda_dpo | dpo | simpo | orpo', choices=LOSSES)
    beta: float = setting(0.1, within=POSITIVE, help='β of the implicit reward β (logp_θ − logp_ref) (SimPO: its own β)')
    logp_reduction: str = setting("mean", help="mean (the paper's code) | sum (classic DPO)", choices=REDUCTIONS)
    simpo_gamma: float = setting(0.5, within=NON_NEGATIVE, help="SimPO's target margin γ")
    orpo_alpha: float = setting(1.0, within=NON_NEGATIVE, help="ORPO's weight α of the odds-ratio term")

    def __post_init__(self) -> None:
        check_settings(self, "loss")


@dataclass
class ObjectiveOutput:
    """``loss`` (scalar), ``rewards`` ``[B, N]`` used for ranking, and scalar ``metrics``.

    ``count`` is what ``loss`` is a mean over (prompts with signal, or valid pairs), so data-parallel
    workers can weight their shards into the mean over the global batch.
    """

    loss: Tensor
    rewards: Tensor
    metrics: dict[str, float]
    count: Tensor


def compute_objective(
    config: LossConfig,
    logps: ResponseLogps,
    reference_logps: Tensor,
    batch: dict[str, Tensor],
    lambdas: Tensor,
    dimensions: Sequence[str],
) -> ObjectiveOutput:
    """The configured loss for one batch.

    logps: the policy's ``[B, N]`` log-probs; reference_logps: ``[B, N]`` under the configured
    reduction; lambdas: ``[B, m]``. The reference-free baselines rank by their own reward
    (SimPO: β × mean log-prob; ORPO: log odds).
    """
    policy = logps.reduced(config.logp_reduction)
    masks = {"response_mask": batch["response_mask"], "target_mask": batch["target_mask"]}
    if config.name == "lambda_dpo":
        output = lambda_dpo_loss(policy, reference_logps, batch["targets"], lambdas, beta=config.beta, **masks)
        per_dimension = {f"loss/{name}": value.item() for name, value in zip(dimensions, output.per_dimension)}
        return ObjectiveOutput(output.loss, output.rewards, per_dimension, output.used.sum())
    preference, eligible = mixed_target(batch["targets"], lambdas, **masks)
    if config.name == "dpo":
        output = dpo_loss(policy, reference_logps, preference, beta=config.beta, eligible=eligible)
        rewards = config.beta * (policy - reference_logps)
    elif config.name == "simpo":
        output = simpo_loss(logps.sum, logps.tokens, preference, beta=config.beta, gamma=config.simpo_gamma, eligible=eligible)
        rewards = config.beta * logps.mean
    else:
        output = orpo_loss(logps.mean, preference, alpha=config.orpo_alpha, eligible=eligible)
        rewards = log_odds(logps.mean)
    return ObjectiveOutput(output.loss, rewards, {"skipped_pairs": float(output.num_skipped)}, output.valid.sum())


def pairwise_batch(batch: dict[str, Tensor], lambdas: Tensor) -> dict[str, Tensor]:
    """``batch`` cut to each prompt's best and worst response under its λ's mixed target.

    The pairwise losses use only these two, so the other N − 2 need no forward pass. The result
    has N = 2 (slot 0 the chosen, slot 1 the rejected response; a prompt without a usable pair
    keeps the two the loss will skip) and ``slots`` ``[B, 2]``: their places in the full batch,
    where the reference cache looks them up. Sequences are trimmed to the longest kept one.
    """
    preference, eligible = mixed_target(batch["targets"], lambdas, response_mask=batch["response_mask"], target_mask=batch["target_mask"])
    chosen, rejected, _ = best_worst_pairs(preference, eligible)
    slots = torch.stack([chosen, rejected], dim=1)
    batch_size, num_slots = batch["response_mask"].shape
    rows = (torch.arange(batch_size, device=slots.device)[:, None] * num_slots + slots).reshape(-1)
    length = int(batch["attention_mask"][rows].sum(dim=-1).max())
    per_dimension = slots[:, None, :].expand(-1, batch["targets"].shape[1], -1)
    return {
        **batch,
        **{name: batch[name][rows, :length] for name in ("input_ids", "attention_mask", "labels")},
        **{name: batch[name].gather(1, slots) for name in ("response_mask", "response_lengths")},
        **{name: batch[name].gather(2, per_dimension) for name in ("ratings", "targets", "target_mask")},
        "slots": slots,
    }
