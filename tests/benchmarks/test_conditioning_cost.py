"""The conditioning-cost benchmark: baseline overrides, the cost table, and one tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).parents[2] / "benchmarks" / "conditioning_cost.py"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(PATH.parent))  # the spawned workers import the script by name
    import conditioning_cost

    return conditioning_cost


def test_the_baseline_is_the_unconditioned_centroid_model(bench):
    from lambda_dpo.train_config import load_train_config

    assert bench.variant_overrides("conditioned", 4) == []
    overrides = bench.variant_overrides("unconditioned", 4)
    config = load_train_config("configs/train/tiny-conditioned.yaml", ["lambdas.anchor_share=0.25", *overrides])
    assert config.conditioning == "none" and config.lambdas.sampler == "fixed" and config.lambdas.anchor_share == 0
    assert config.lambdas.weights == [0.25] * 4


def test_cost_table_is_unconditioned_minus_conditioned(bench):
    results = {
        (0, "conditioned"): {"centroid_accuracy": 0.70, "steerability": 0.5},
        (0, "unconditioned"): {"centroid_accuracy": 0.74, "steerability": None},
        (1, "conditioned"): {"centroid_accuracy": 0.73, "steerability": 0.6},
        (1, "unconditioned"): {"centroid_accuracy": 0.75, "steerability": None},
    }
    lines, costs = bench.cost_table(results, [0, 1])
    assert np.allclose(costs, [0.04, 0.02])
    assert lines[1].split() == ["0", "0.700", "0.740", "0.040", "0.500"]
    assert lines[-1].split()[:3] == ["mean", "0.030", "0.550"] and "± 0.010 standard error over 2 seeds" in lines[-1]


@pytest.mark.integration
def test_a_tiny_run_trains_both_variants_and_a_rerun_reuses_them(bench, tmp_path, capsys):
    argv = ["--seeds", "0", "--out", str(tmp_path), "data.source=synthetic:120", "optim.max_steps=3", "sft.steps=1", "log_every=1"]
    assert bench.main(argv) == 0
    conditioned = json.loads((tmp_path / "seed-0" / "conditioned" / "result.json").read_text())
    unconditioned = json.loads((tmp_path / "seed-0" / "unconditioned" / "result.json").read_text())
    assert "conditioning=none" in unconditioned["overrides"] and "seed=0" in conditioned["overrides"]
    assert np.array(conditioned["steerability_matrix"]).shape == (4, 4)
    assert (tmp_path / "seed-0" / "conditioned" / "metrics.jsonl").read_text().count("train/loss") == 3
    row = [line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["0"]][0].split()
    assert float(row[3]) == pytest.approx(unconditioned["centroid_accuracy"] - conditioned["centroid_accuracy"], abs=1e-3)
    stamp = (tmp_path / "seed-0" / "conditioned" / "result.json").stat().st_mtime_ns
    assert bench.main(argv) == 0  # nothing trains again
    assert (tmp_path / "seed-0" / "conditioned" / "result.json").stat().st_mtime_ns == stamp
    assert (tmp_path / "summary.txt").read_text().splitlines()[1].split() == row
