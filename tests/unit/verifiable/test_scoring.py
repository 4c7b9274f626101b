"""Intervals and paired differences over prompts."""

import numpy as np
import pytest

from lambda_dpo.verifiable.scoring import bootstrap_interval, metric_values, paired_difference, summarise


def row(record_id, mixed, **scores):
    return {"record_id": record_id, "response": "a b c", "new_tokens": 4, "finished": True, "scores": scores, "mixed": mixed}


def test_the_bootstrap_interval_brackets_the_mean_and_narrows_with_more_prompts():
    rng = np.random.default_rng(0)
    few, many = rng.random(20).tolist(), rng.random(2000).tolist()
    low, high = bootstrap_interval(few)
    assert low < np.mean(few) < high
    low_many, high_many = bootstrap_interval(many)
    assert high_many - low_many < (high - low) / 5
    assert all(np.isnan(bootstrap_interval([None, 0.5])))  # one prompt: no interval


def test_paired_differences_match_prompts_by_id_and_skip_where_a_dimension_does_not_apply():
    first = [row("a", 0.9, correctness=1.0), row("b", 0.5, correctness=None), row("c", 0.7, correctness=0.5)]
    second = [row("c", 0.6, correctness=0.0), row("a", 0.4, correctness=1.0), row("b", 0.5, correctness=None)]
    mean, (low, high), count = paired_difference(first, second, "verifiable/mixed")
    assert count == 3 and mean == pytest.approx((0.5 + 0.0 + 0.1) / 3) and low <= mean <= high
    assert paired_difference(first, second, "verifiable/correctness")[2] == 2
    with pytest.raises(ValueError, match="not on the same prompts"):
        paired_difference(first, second[:2], "verifiable/mixed")
    with pytest.raises(ValueError, match="not a per-prompt verifiable metric"):
        metric_values(first, "generation/mean_words")


def test_the_summary_averages_each_dimension_over_the_prompts_it_applies_to():
    metrics = summarise([row("a", 1.0, correctness=1.0, detail=0.5), row("b", 0.0, correctness=None, detail=0.0)], ["correctness", "detail"])
    assert metrics["verifiable/correctness"] == 1.0 and metrics["verifiable/detail"] == 0.25 and metrics["verifiable/mixed"] == 0.5
    assert metrics["generation/mean_words"] == 3 and metrics["generation/unfinished"] == 0.0
