"""λ-DPO and its pairwise baselines, as pure functions on plain tensors.

Shapes: B prompts, N response slots per prompt (padded slots masked), m preference dimensions.
All functions take sequence log-probabilities already reduced over response tokens (see
docs/method.md, item 1); nothing here touches a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lambda_dpo.preferences import dimension_available


@dataclass(frozen=True)
class LambdaDPOOutput:
    """Result of :func:`lambda_dpo_loss`.

    loss: scalar, mean over the prompts that carry a signal under their λ.
    per_dimension: ``[m]``, mean ``CE_k`` over the prompts where dimension k is available
        (NaN where no prompt of the batch has it).
    per_prompt: ``[B]``, ``Σ_k λ̃_k CE_k`` (0 for prompts without signal).
    rewards: ``[B, N]``, ``β (logp_θ − logp_ref)`` (padded slots hold 0).
    available: ``[B, m]`` bool, dimension k has ≥ 2 rated responses for prompt b.
    used: ``[B]`` bool, the prompt entered the batch mean.
    """

    loss: Tensor
    per_dimension: Tensor
    per_prompt: Tensor
    rewards: Tensor
    available: Tensor
    used: Tensor


def _default_masks(
    policy_logps: Tensor, targets: Tensor, response_mask: Tensor | None, target_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    if response_mask is None:
        response_mask = torch.ones_like(policy_logps, dtype=torch.bool)
    if target_mask is None:
        target_mask = torch.ones_like(targets, dtype=torch.bool)
    return response_mask.bool(), target_mask.bool() & response_mask.bool().unsqueeze(1)


def _check_shapes(policy_logps: Tensor, reference_logps: Tensor, targets: Tensor, lambdas: Tensor) -> None:
    if policy_logps.dim() != 2 or policy_logps.shape != reference_logps.shape:
        raise ValueError(
            f"policy_logps and reference_logps must both be [B, N]; got {tuple(policy_logps.shape)} "
            f"and {tuple(reference_logps.shape)}"
        )
    batch, slots = policy_logps.shape
    if targets.dim() != 3 or targets.shape[0] != batch or targets.shape[2] != slots:
        raise ValueError(f"targets must be [B, m, N] = [{batch}, m, {slots}]; got {tuple(targets.shape)}")
    if lambdas.shape != targets.shape[:2]:
        raise ValueError(f"lambdas must be [B, m] = {list(targets.shape[:2])}; got {tuple(lambdas.shape)}")


def renormalise_lambdas(lambdas: Tensor, available: Tensor) -> Tensor:
    """λ restricted to the available dimensions and rescaled to sum to 1.

    lambdas: ``[B, m]``; available: ``[B, m]`` bool. Rows whose λ puts no weight on any
    available dimension come back as all zeros (the prompt carries no signal under that λ).
    """
    kept = lambdas * available.to(lambdas.dtype)
    total = kept.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, kept / total.clamp_min(torch.finfo(kept.dtype).tiny), torch.zeros_like(kept))


def restricted_log_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """``log softmax`` of ``scores`` over the entries where ``mask`` is True, along the last dim.

    scores: ``[..., N]``; mask: broadcastable to ``[..., N]``. Masked-out entries and rows with no
    entry come back as 0 (not -inf), so that multiplying by a zero target and back-propagating
    never produces NaN.
    """
    mask = mask.expand_as(scores) if mask.shape != scores.shape else mask
    row_has_entry = mask.any(dim=-1, keepdim=True)
    masked_scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~row_has_entry, 0.0)
    return torch.where(mask, torch.log_softmax(masked_scores, dim=-1), torch.zeros_like(scores))


def lambda_dpo_loss(
    policy_logps: Tensor,
    reference_logps: Tensor,
    targets: Tensor,
    lambdas: Tensor,
    *,
    beta: float,
    response_mask: Tensor | None = None,
    target_mask: Tensor | None = None,
) -> LambdaDPOOutput:
    """Multi-preference λ-weighted listwise DPO loss (docs/method.md, items 2–6).

    Args:
        policy_logps: ``[B, N]`` sequence log-probs under the policy.
        reference_logps: ``[B, N]`` sequence log-probs under the reference (no gradient needed).
        targets: ``[B, m, N]`` per-dimension target distributions ``p_k``; each row sums to 1
            over the responses rated in that dimension (see :mod:`lambda_dpo.preferences`).
        lambdas: ``[B, m]`` preference weights on the simplex, one λ per prompt.
        beta: inverse temperature of the implicit reward.
        response_mask: ``[B, N]`` bool, False for padded response slots.
        target_mask: ``[B, m, N]`` bool, False where a response is unrated (N/A) in a dimension.

    Per prompt the loss is ``Σ_k λ̃_k CE_k`` with ``CE_k = −Σ_{i∈S_k} p_k(i) log softmax_{S_k}(r)_i``,
    where ``S_k`` is the rated set of dimension k and ``λ̃`` is λ renormalised over the dimensions
    with at least two rated responses. The batch loss is the mean over prompts whose λ̃ is not
    all zero. With every response rated in every dimension this equals
    ``−Σ_i p^λ(i) log P_θ(i)``, ``p^λ = Σ_k λ_k p_k``.
    """
    _check_shapes(policy_logps, reference_logps, targets, lambdas)
    response_mask, rated = _default_masks(policy_logps, targets, response_mask, target_mask)

    rewards = beta * (policy_logps - reference_logps)
    rewards = rewards.masked_fill(~response_mask, 0.0)
    log_probs = restricted_log_softmax(rewards.unsqueeze(1).expand_as(targets), rated)  # [B, m, N]
    cross_entropy = -(targets.to(log_probs.dtype) * log_probs).sum(dim=-1)  # [B, m]

    available = dimension_available(rated)
    weights = renormalise_lambdas(lambdas.to(cross_entropy.dtype), available)
    per_prompt = (weights * cross_entropy.masked_fill(~available, 0.0)).sum(dim=-1)
    used = weights.sum(dim=-1) > 0
    loss = per_prompt.sum() / used.sum().clamp_min(1)

    per_dimension_count = available.sum(dim=0)
    per_dimension = cross_entropy.masked_fill(~available, 0.0).sum(dim=0) / per_dimension_count
    per_dimension = torch.where(per_dimension_count > 0, per_dimension, torch.full_like(per_dimension, float("nan")))
    return LambdaDPOOutput(
        loss=loss,
        per_dimension=per_dimension.detach(),
        per_prompt=per_prompt,
        rewards=rewards,
        available=available,
        used=used,
    )


def mixed_target(
    targets: Tensor, lambdas: Tensor, *, response_mask: Tensor | None = None, target_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The λ-mixed target ``p^λ = Σ_k λ̃_k p_k`` and the responses it can rank.

    targets: ``[B, m, N]``; lambdas: ``[B, m]``; masks as in :func:`lambda_dpo_loss`.
    Returns ``(p_lambda [B, N], eligible [B, N] bool)``. A response is eligible when it is rated
    in every dimension that λ̃ weights: a response missing a weighted rating would otherwise look
    worse than it is (the paper's N/A-as-worst defect).
    """
    response_mask, rated = _default_masks(targets[:, 0, :], targets, response_mask, target_mask)
    available = dimension_available(rated)
    weights = renormalise_lambdas(lambdas.to(targets.dtype), available)  # [B, m]
    p_lambda = (weights.unsqueeze(-1) * targets).sum(dim=1)
    weighted = (weights > 0).unsqueeze(-1)  # [B, m, 1]
    eligible = response_mask & (rated | ~weighted).all(dim=1) & (weights.sum(dim=-1, keepdim=True) > 0)
    return p_lambda, eligible


@dataclass(frozen=True)
class PairwiseOutput:
    """Result of the pairwise baselines.

    loss: scalar, mean over the prompts with a usable pair.
    chosen_rewards / rejected_rewards: ``[B]`` the implicit rewards (or scores) of the pair.
    chosen_index / rejected_index: ``[B]`` response slots of the best and worst response.
    valid: ``[B]`` bool, the prompt had two eligible responses with different preference.
    num_skipped: number of prompts skipped (ties or fewer than two eligible responses).
    """

    loss: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    chosen_index: Tensor
    rejected_index: Tensor
    valid: Tensor
    num_skipped: int


def best_worst_pairs(preference: Tensor, eligible: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Best and worst eligible response per prompt under a preference distribution.

    preference: ``[B, N]`` (e.g. ``p^λ``); eligible: ``[B, N]`` bool.
    Returns ``(chosen [B] long, rejected [B] long, valid [B] bool)``; ``valid`` is False for ties
    (best == worst preference) and for prompts with fewer than two eligible responses.
    """
    if eligible is None:
        eligible = torch.ones_like(preference, dtype=torch.bool)
    best = preference.masked_fill(~eligible, float("-inf")).max(dim=-1)
    worst = preference.masked_fill(~eligible, float("inf")).min(dim=-1)
    valid = (eligible.sum(dim=-1) >= 2) & (best.values > worst.values)
    return best.indices, worst.indices, valid


def _pick(values: Tensor, index: Tensor) -> Tensor:
    return values.gather(-1, index.unsqueeze(-1)).squeeze(-1)


def _pairwise_output(losses: Tensor, chosen: Tensor, rejected: Tensor, pairs: tuple[Tensor, Tensor, Tensor]) -> PairwiseOutput:
    chosen_index, rejected_index, valid = pairs
    loss = losses.masked_fill(~valid, 0.0).sum() / valid.sum().clamp_min(1)
    return PairwiseOutput(
        loss=loss,
        chosen_rewards=chosen,
        rejected_rewards=rejected,
        chosen_index=chosen_index,
        rejected_index=rejected_index,
        valid=valid,
        num_skipped=int((~valid).sum()),
    )


def dpo_loss(
    policy_logps: Tensor, reference_logps: Tensor, preference: Tensor, *, beta: float, eligible: Tensor | None = None
) -> PairwiseOutput:
    """Classic DPO on the best and worst response under ``preference`` (docs/method.md, "Baselines").

    policy_logps, reference_logps, preference: ``[B, N]``; eligible: ``[B, N]`` bool.
    Per prompt ``−log σ(r_w − r_l)`` with ``r = β (logp_θ − logp_ref)``; ties are skipped.
    """
    pairs = best_worst_pairs(preference, eligible)
    rewards = beta * (policy_logps - reference_logps)
    chosen, rejected = _pick(rewards, pairs[0]), _pick(rewards, pairs[1])
    return _pairwise_output(-F.logsigmoid(chosen - rejected), chosen, rejected, pairs)


def simpo_loss(
    policy_logps: Tensor,
    response_lengths: Tensor,
    preference: Tensor,
    *,
    beta: float,
    gamma: float,
    eligible: Tensor | None = None,
) -> PairwiseOutput:
    """SimPO (reference-free) on the best and worst response under ``preference``.

    policy_logps: ``[B, N]`` *summed* token log-probs; response_lengths: ``[B, N]`` token counts;
    preference: ``[B, N]``. Per prompt ``−log σ(β/|y_w| logp(y_w) − β/|y_l| logp(y_l) − γ)``.
    """
    pairs = best_worst_pairs(preference, eligible)
    scores = beta * policy_logps / response_lengths.to(policy_logps.dtype).clamp_min(1)
    chosen, rejected = _pick(scores, pairs[0]), _pick(scores, pairs[1])
    return _pairwise_output(-F.logsigmoid(chosen - rejected - gamma), chosen, rejected, pairs)


def log_odds(mean_logps: Tensor) -> Tensor:
    """``log(p / (1 − p))`` for ``p = exp(mean_logps)``, stable for p near 0 and 1 (mean_logps ≤ 0)."""
    return mean_logps - torch.log1p(-torch.exp(mean_logps).clamp_max(1 - 1e-7))


def orpo_loss(
    policy_mean_logps: Tensor, preference: Tensor, *, alpha: float, eligible: Tensor | None = None
) -> PairwiseOutput:
    """ORPO (reference-free) on the best and worst response under ``preference``.

    policy_mean_logps: ``[B, N]`` *mean* token log-probs; preference: ``[B, N]``.
    Per prompt ``NLL(y_w) − α log σ(log odds(y_w) − log odds(y_l))``, NLL = −mean token log-prob.
    The returned rewards are the log odds.
    """
    pairs = best_worst_pairs(preference, eligible)
    odds = log_odds(policy_mean_logps)
    chosen, rejected = _pick(odds, pairs[0]), _pick(odds, pairs[1])
    nll = -_pick(policy_mean_logps, pairs[0])
    return _pairwise_output(nll - alpha * F.logsigmoid(chosen - rejected), chosen, rejected, pairs)
