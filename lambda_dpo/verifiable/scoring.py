"""Scoring by generation: greedy responses to held-out prompts, checked by the verifiers.

Metrics (names used in eval.json, Tune results and reports):

- ``verifiable/<dimension>``: mean score in [0, 1] over the prompts where the dimension applies;
- ``verifiable/mixed``: mean over prompts of ``Σ_k λ̃_k score_k`` at the evaluation λ, with λ
  renormalised over the dimensions that apply to the prompt, as the loss does;
- ``generation/mean_words``, ``generation/mean_new_tokens``, and ``generation/unfinished``: the
  share of responses cut at ``max_new_tokens``.

Each prompt's row (prompt, response, scores) is kept, so that intervals and paired comparisons
can be computed over prompts (:func:`bootstrap_interval`, :func:`paired_difference`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from lambda_dpo.data.records import ListwiseExample
from lambda_dpo.decoding import greedy_generations
from lambda_dpo.verifiable.prompts import Verification
from lambda_dpo.verifiable.verifiers import VERIFIABLE_DIMENSIONS, count_words, mixed_score, score_response

PREFIX = "verifiable/"
MIXED = PREFIX + "mixed"


def verifiable_examples(examples: Sequence[ListwiseExample]) -> list[tuple[ListwiseExample, Verification]]:
    """The examples that carry a ``verification`` (a verifiable set's records); errors name the record."""
    found = []
    for example in examples:
        if "verification" in example.metadata:
            found.append((example, Verification.from_json(example.metadata["verification"], where=f"record {example.record_id}: verification")))
    if not found:
        raise ValueError("scoring by generation needs records with a 'verification' field (e.g. a set made by lambda-dpo data build-verifiable)")
    return found


def check_dimensions(dimensions: Sequence[str]) -> None:
    unknown = [name for name in dimensions if name not in VERIFIABLE_DIMENSIONS]
    if unknown:
        raise ValueError(f"dimensions {unknown} have no verifier; generation is scored on {', '.join(VERIFIABLE_DIMENSIONS)}")


@dataclass
class GenerationScores:
    metrics: dict[str, float]
    rows: list[dict]  # per prompt: record_id, prompt, response, new_tokens, finished, scores, mixed


def score_generations(
    model,
    tokenizer,
    examples: Sequence[ListwiseExample],
    *,
    weights: Sequence[float],
    dimensions: Sequence[str],
    render: Callable[[ListwiseExample], str],
    max_new_tokens: int,
    batch_size: int,
    device=None,
    track: Callable = lambda iterable, total, description: iterable,
) -> GenerationScores:
    """Generate greedily for every verifiable example (:func:`~lambda_dpo.decoding.greedy_generations`,
    ``batch_size`` prompts decoded together) and score the responses.

    weights: the evaluation λ over ``dimensions`` (which must all be verifiable ones).
    render: the prompt text the model reads (plain, or λ-conditioned).
    """
    check_dimensions(dimensions)
    lambdas = dict(zip(dimensions, weights))
    pairs = verifiable_examples(examples)
    generations = greedy_generations(model, tokenizer, [render(example) for example, _ in pairs], max_new_tokens=max_new_tokens,
                                     batch_size=batch_size, device=device, track=track)
    rows = []
    for (example, verification), generation in zip(pairs, generations):
        scores = {name: value for name, value in score_response(generation.text, verification).items() if name in lambdas}
        rows.append({
            "record_id": example.record_id, "prompt": example.prompt, "response": generation.text,
            "new_tokens": generation.new_tokens, "finished": generation.finished,
            "scores": scores, "mixed": mixed_score(scores, lambdas),
        })
    return GenerationScores(summarise(rows, dimensions), rows)


def summarise(rows: Sequence[dict], dimensions: Sequence[str]) -> dict[str, float]:
    metrics = {f"{PREFIX}{name}": _mean([row["scores"].get(name) for row in rows]) for name in dimensions}
    metrics[MIXED] = _mean([row["mixed"] for row in rows])
    metrics["generation/mean_words"] = float(np.mean([count_words(row["response"]) for row in rows]))
    metrics["generation/mean_new_tokens"] = float(np.mean([row["new_tokens"] for row in rows]))
    metrics["generation/unfinished"] = float(np.mean([not row["finished"] for row in rows]))
    return metrics


def _mean(values) -> float:
    kept = [value for value in values if value is not None]
    return float(np.mean(kept)) if kept else float("nan")


def metric_values(rows: Sequence[dict], metric: str) -> list[float | None]:
    """Each prompt's value of ``metric`` (a ``verifiable/*`` name); None where it does not apply."""
    if metric == MIXED:
        return [row["mixed"] for row in rows]
    if not metric.startswith(PREFIX):
        raise ValueError(f"{metric} is not a per-prompt verifiable metric ({PREFIX}<dimension> or {MIXED})")
    return [row["scores"].get(metric[len(PREFIX) :]) for row in rows]


def bootstrap_interval(values: Sequence[float | None], *, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over prompts (Nones left out)."""
    kept = np.array([value for value in values if value is not None], dtype=float)
    if len(kept) < 2:
        return math.nan, math.nan
    means = kept[np.random.default_rng(seed).integers(0, len(kept), (resamples, len(kept)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def paired_difference(first: Sequence[dict], second: Sequence[dict], metric: str, **options) -> tuple[float, tuple[float, float], int]:
    """Mean of (first − second) over the prompts both scored on ``metric``, its bootstrap interval
    and the number of prompts; rows are matched by ``record_id``."""
    by_id = {row["record_id"]: row for row in second}
    missing = [row["record_id"] for row in first if row["record_id"] not in by_id]
    if missing:
        raise ValueError(f"the two score files are not on the same prompts: {missing[:3]} are only in the first")
    left = metric_values(first, metric)
    right = metric_values([by_id[row["record_id"]] for row in first], metric)
    differences = [a - b for a, b in zip(left, right) if a is not None and b is not None]
    return float(np.mean(differences)) if differences else math.nan, bootstrap_interval(differences, **options), len(differences)
