"""Held-out evaluation: every metric of docs/metrics.md, per dimension and for the λ-mixed target."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from lambda_dpo.config import AT_LEAST_ONE, NON_NEGATIVE, Interval, check_settings, setting
from lambda_dpo.data.collate import ListwiseCollator, longest_first
from lambda_dpo.data.encoding import EncodedExample
from lambda_dpo.lambdas import validate_lambda
from lambda_dpo.metrics import peak_memory_mb, ranking_metrics
from lambda_dpo.modeling import ReferenceCache, ResponseLogps, response_logps, to_device
from lambda_dpo.objective import LossConfig, compute_objective
from lambda_dpo.precision import autocast_context
from lambda_dpo.preferences import ratings_to_targets


@dataclass
class EvalConfig:
    """Held-out data and how it is scored."""

    source: Optional[str] = setting(None, path=True, help='held-out data; None = hold out `fraction` of data.source')
    split: str = setting("test", help='hub split of `source`')
    fraction: float = setting(0.1, within=Interval(0, 1, "neither"), help='share of data.source held out when `source` is None')
    split_seed: int = setting(0, help='fixed, so runs with different seeds are scored on the same prompts')
    limit: Optional[int] = setting(None, within=AT_LEAST_ONE, help='keep at most this many held-out examples')
    weights: Optional[List[float]] = setting(None, help='λ of the mixed target; None = the centroid (1/m, ...)')
    every: int = setting(0, within=NON_NEGATIVE, help='evaluate every this many steps (0 = at the end only)')
    batch_size: int = setting(16, within=AT_LEAST_ONE, help='prompts per evaluation forward')
    generate: bool = setting(False, help='the final evaluation also scores greedy generations with the verifiers (verifiable/*)')
    generation_batch_size: int = setting(128, within=AT_LEAST_ONE, help='prompts decoded together by generate (grouped by length; a finished row leaves its batch); on 2 CPU cores 128 decoded 3.5x faster than 8')
    max_new_tokens: int = setting(128, within=AT_LEAST_ONE, help='for generate')

    def __post_init__(self) -> None:
        check_settings(self, "eval")

    def mixed_lambda(self, num_dimensions: int) -> np.ndarray:
        if self.weights is None:
            return np.full(num_dimensions, 1.0 / num_dimensions)
        return validate_lambda(self.weights, num_dimensions, name="eval.weights")


def _pad_slots(tensor: Tensor, slots: int, value) -> Tensor:
    missing = slots - tensor.shape[-1]
    return torch.nn.functional.pad(tensor, (0, missing), value=value) if missing else tensor


@torch.no_grad()
def evaluate_policy(
    model,
    examples: Sequence[EncodedExample],
    collator: ListwiseCollator,
    reference: ReferenceCache,
    *,
    loss: LossConfig,
    eval_lambda: np.ndarray,
    dimensions: Sequence[str],
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    conditioner=None,
) -> dict[str, float]:
    """Score every held-out example once and return the metrics (loss at the evaluation λ).

    conditioner: for a λ-conditioned policy, renders ``eval_lambda`` into every prompt.
    """
    was_training = model.training
    model.eval()
    examples = longest_first(examples)  # metrics are per prompt: the order only changes the padding
    slots = max(len(example.response_ids) for example in examples)
    columns: dict[str, list[Tensor]] = {name: [] for name in ("sum", "mean", "tokens", "reference", "ratings", "response_mask")}
    autocast = autocast_context(device, autocast_dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for first in range(0, len(examples), batch_size):
        chunk = examples[first : first + batch_size]
        if conditioner is not None:
            chunk = conditioner(chunk, np.tile(eval_lambda, (len(chunk), 1)))
        batch = collator(chunk)
        with autocast:
            logps = response_logps(model, to_device(batch, device))
        columns["sum"].append(_pad_slots(logps.sum.float().cpu(), slots, 0.0))
        columns["mean"].append(_pad_slots(logps.mean.float().cpu(), slots, 0.0))
        columns["tokens"].append(_pad_slots(logps.tokens.cpu(), slots, 0))
        columns["reference"].append(_pad_slots(reference.lookup(batch["example_keys"], batch["response_mask"].shape[1], loss.logp_reduction), slots, 0.0))
        columns["ratings"].append(_pad_slots(batch["ratings"], slots, float("nan")))
        columns["response_mask"].append(_pad_slots(batch["response_mask"], slots, False))
    elapsed = time.perf_counter() - start
    model.train(was_training)

    joined = {name: torch.cat(values) for name, values in columns.items()}
    logps = ResponseLogps(sum=joined["sum"], mean=joined["mean"], tokens=joined["tokens"])
    ratings, response_mask = joined["ratings"], joined["response_mask"]
    targets, target_mask = ratings_to_targets(ratings, temperature=collator.target_temperature, response_mask=response_mask)
    full_batch = {"targets": targets, "target_mask": target_mask, "response_mask": response_mask}
    lambdas = torch.as_tensor(eval_lambda, dtype=torch.float32).expand(len(examples), -1)
    objective = compute_objective(loss, logps, joined["reference"], full_batch, lambdas, dimensions)
    policy = logps.reduced(loss.logp_reduction)
    metrics = {"loss": objective.loss.item(), **objective.metrics}
    metrics |= ranking_metrics(
        rewards=objective.rewards,
        policy_logps=policy,
        reference_logps=joined["reference"],
        lengths=logps.tokens,
        ratings=ratings,
        response_mask=response_mask,
        lambdas=lambdas,
        dimensions=dimensions,
        target_temperature=collator.target_temperature,
    )
    metrics["eval/tokens_per_second"] = logps.tokens.sum().item() / max(elapsed, 1e-9)
    metrics["eval/peak_memory_mb"] = peak_memory_mb(device)
    return metrics
