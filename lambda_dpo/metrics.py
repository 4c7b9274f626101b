"""Ranking metrics (docs/metrics.md), on plain tensors of a whole evaluation set.

Shapes: E prompts, N response slots, m dimensions. ``rewards``, ``policy_logps``,
``reference_logps``, ``lengths``: ``[E, N]``; ``ratings``: ``[E, m, N]`` (NaN = N/A or padding);
``response_mask``: ``[E, N]`` bool; ``lambdas``: ``[E, m]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import ndcg_score
from torch import Tensor

from lambda_dpo.loss import mixed_target
from lambda_dpo.preferences import ratings_to_targets

TIE_TOLERANCE = 1e-9


def pairwise_accuracy(rewards: Tensor, ratings: Tensor) -> float:
    """Among pairs rated differently in one dimension (``ratings`` ``[E, N]``, NaN = unrated),
    the fraction whose rewards are ordered like the ratings (a reward tie counts half)."""
    higher = ratings[:, :, None] > ratings[:, None, :]  # NaN compares False: unrated pairs drop out
    reward_gap = rewards[:, :, None] - rewards[:, None, :]
    pairs = higher.sum().item()
    if pairs == 0:
        return float("nan")
    correct = (reward_gap > 0)[higher].float().sum() + 0.5 * (reward_gap == 0)[higher].float().sum()
    return (correct / pairs).item()


def top1_accuracy(rewards: Tensor, scores: Tensor, eligible: Tensor) -> float:
    """Fraction of prompts whose highest-reward eligible response has the highest score.

    scores: ``[E, N]``; eligible: ``[E, N]`` bool. Prompts with fewer than two eligible
    responses, or whose eligible scores are all equal, carry no signal and are left out; a tie
    for the best score counts as correct for any of the tied responses.
    """
    masked_scores = scores.masked_fill(~eligible, float("-inf"))
    best_score = masked_scores.max(dim=-1).values
    informative = (eligible.sum(-1) >= 2) & ((masked_scores < best_score[:, None] - TIE_TOLERANCE) & eligible).any(-1)
    if not informative.any():
        return float("nan")
    chosen = rewards.masked_fill(~eligible, float("-inf")).argmax(dim=-1)
    hit = masked_scores.gather(-1, chosen[:, None]).squeeze(-1) >= best_score - TIE_TOLERANCE
    return hit[informative].float().mean().item()


def ndcg(rewards: Tensor, ratings: Tensor) -> float:
    """Mean NDCG over prompts of the rated responses ranked by reward (gain = rating).

    Computed by scikit-learn per prompt (responses rated differ in number between prompts);
    prompts with fewer than two rated responses are left out.
    """
    if not torch.isfinite(rewards).all():  # scikit-learn refuses NaN; a broken policy has no ranking
        return float("nan")
    values = []
    for prompt_rewards, prompt_ratings in zip(rewards.double().cpu().numpy(), ratings.double().cpu().numpy()):
        rated = ~np.isnan(prompt_ratings)
        if rated.sum() >= 2:
            values.append(ndcg_score(prompt_ratings[rated][None], prompt_rewards[rated][None]))
    return float(np.mean(values)) if values else float("nan")


def length_bias(policy_logps: Tensor, lengths: Tensor, response_mask: Tensor) -> float:
    """Spearman ρ between response log-prob and response length over every valid response."""
    logps = policy_logps[response_mask].double().cpu().numpy()
    sizes = lengths[response_mask].double().cpu().numpy()
    if len(logps) < 3 or np.ptp(sizes) == 0 or np.ptp(logps) == 0:
        return float("nan")
    return float(spearmanr(logps, sizes).statistic)


def ranking_metrics(
    *,
    rewards: Tensor,
    policy_logps: Tensor,
    reference_logps: Tensor,
    lengths: Tensor,
    ratings: Tensor,
    response_mask: Tensor,
    lambdas: Tensor,
    dimensions: Sequence[str],
    target_temperature: float = 1.0,
) -> dict[str, float]:
    """Every ranking metric, per dimension and for the λ-mixed target.

    The mixed target is ``p^λ`` (docs/method.md, item 6) with the given (evaluation) λ; its best and
    worst responses are the "chosen" and "rejected" of TRL's names (docs/metrics.md).
    """
    targets, target_mask = ratings_to_targets(ratings, temperature=target_temperature, response_mask=response_mask)
    metrics: dict[str, float] = {}
    for k, dimension in enumerate(dimensions):
        dimension_ratings = ratings[:, k].masked_fill(~target_mask[:, k], float("nan"))
        metrics[f"reward_accuracy/{dimension}"] = pairwise_accuracy(rewards, dimension_ratings)
        metrics[f"top1_accuracy/{dimension}"] = top1_accuracy(rewards, dimension_ratings.nan_to_num(0.0), target_mask[:, k])
        metrics[f"ndcg/{dimension}"] = ndcg(rewards, dimension_ratings)
    mixed, eligible = mixed_target(targets, lambdas, response_mask=response_mask, target_mask=target_mask)
    metrics["top1_accuracy/mixed"] = top1_accuracy(rewards, mixed, eligible)
    metrics["reward_margin"] = reward_margin(rewards, mixed, eligible)
    metrics |= chosen_rejected_metrics(rewards, policy_logps, mixed, eligible)
    metrics["logratio/mean"] = (policy_logps - reference_logps)[response_mask].mean().item()
    metrics["length_bias_spearman"] = length_bias(policy_logps, lengths, response_mask)
    return metrics


def best_and_worst(scores: Tensor, eligible: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per prompt, the index of the best and of the worst eligible response under ``scores``
    (``[E]`` each), and which prompts have two eligible responses to compare (``[E]`` bool)."""
    best = scores.masked_fill(~eligible, float("-inf")).argmax(-1)
    worst = scores.masked_fill(~eligible, float("inf")).argmin(-1)
    return best, worst, eligible.sum(-1) >= 2


def reward_margin(rewards: Tensor, scores: Tensor, eligible: Tensor) -> float:
    """Mean reward of the best minus the worst eligible response under ``scores``."""
    best, worst, usable = best_and_worst(scores, eligible)
    if not usable.any():
        return float("nan")
    gap = rewards.gather(-1, best[:, None]) - rewards.gather(-1, worst[:, None])
    return gap.squeeze(-1)[usable].mean().item()


def chosen_rejected_metrics(rewards: Tensor, policy_logps: Tensor, scores: Tensor, eligible: Tensor) -> dict[str, float]:
    """TRL's DPO metric names, with chosen and rejected = the best and the worst eligible response
    under ``scores`` (the mixed target), so that dashboards built for TRL read our runs."""
    best, worst, usable = best_and_worst(scores, eligible)
    if not usable.any():
        return dict.fromkeys(("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"), float("nan"))

    def picked(values: Tensor, index: Tensor) -> Tensor:
        return values.gather(-1, index[:, None]).squeeze(-1)[usable]

    chosen, rejected = picked(rewards, best), picked(rewards, worst)
    return {
        "rewards/chosen": chosen.mean().item(),
        "rewards/rejected": rejected.mean().item(),
        "rewards/margins": (chosen - rejected).mean().item(),
        "rewards/accuracies": (chosen > rejected).float().mean().item(),
        "logps/chosen": picked(policy_logps, best).mean().item(),
        "logps/rejected": picked(policy_logps, worst).mean().item(),
    }


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory allocated, or this process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
