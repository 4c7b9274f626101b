"""The real-model sweep's report, on a synthetic sweep directory with warm-start rows from claims runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PATH = Path(__file__).parents[2] / "benchmarks" / "real_model_sweep.py"
DIMENSIONS = ["instruction_following", "correctness", "conciseness", "detail"]
PROMPTS = 30


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(PATH.parent))
    import real_model_sweep

    return real_model_sweep


def write_generations(directory: Path, mixed: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rows = [{"record_id": f"p{i}", "prompt": "", "response": "a b", "new_tokens": 2, "finished": True,
             "scores": dict.fromkeys(DIMENSIONS, float(value)), "mixed": float(value)} for i, value in enumerate(mixed)]
    (directory / "generations.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def sweep(tmp_path):
    """Claims runs (centroid at two seeds, one vertex) as the warm start, and three trials of the sweep."""
    from lambda_dpo.config import save_config
    from search.sweep_config import load_sweep_config

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.5, PROMPTS)
    claims = tmp_path / "claims"
    warm = [("lambda-dpo-s0", [0.25] * 4, base), ("lambda-dpo-s1", [0.25] * 4, base + 0.02), ("one-hot-detail", [0, 0, 0, 1], base - 0.05)]
    for run, _, mixed in warm:
        write_generations(claims / run, mixed)
    pd.DataFrame([{"run": run, "seed": 0, **{f"lambda/{d}": w for d, w in zip(DIMENSIONS, weights)}, "objective": mixed.mean()} for run, weights, mixed in warm]
                 ).to_csv(claims / "observations.csv", index=False)

    sweep_dir = tmp_path / "sweep"
    config = load_sweep_config("configs/sweep/smollm2-135m-verifiable.yaml", [f"output_dir={sweep_dir}", f"searcher.warm_start={claims / 'observations.csv'}"])
    save_config(config, sweep_dir, "sweep.yaml")
    trials = [("t1", [0.625, 0.125, 0.125, 0.125], base + 0.05), ("t2", [0.125, 0.625, 0.125, 0.125], base - 0.02), ("t3", [0.4, 0.1, 0.4, 0.1], base + 0.03)]
    rows = [{"trial_id": f"warm-start-{k}", "status": "WARM_START", **{f"lambda/{d}": w for d, w in zip(DIMENSIONS, weights)}, "objective": mixed.mean()}
            for k, (_, weights, mixed) in enumerate(warm)]
    for trial_id, weights, mixed in trials:
        write_generations(sweep_dir / "runs" / trial_id, mixed)
        (sweep_dir / "runs" / trial_id / "eval.json").write_text(json.dumps({"metrics": {"verifiable/mixed": mixed.mean()}}))
        (sweep_dir / "runs" / trial_id / "checkpoints").mkdir()
        rows.append({"trial_id": trial_id, "status": "TERMINATED", **{f"lambda/{d}": w for d, w in zip(DIMENSIONS, weights)}, "objective": mixed.mean()})
    pd.DataFrame(rows).to_csv(sweep_dir / "results.csv", index=False)
    return sweep_dir, base


def test_the_report_pairs_the_best_against_the_centroid_runs_and_ships_the_sweep(bench, sweep, tmp_path):
    sweep_dir, base = sweep
    example = tmp_path / "example"
    assert bench.main(["--sweep", str(sweep_dir), "--out", str(tmp_path / "out"), "--ship", str(example)]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["trials"] == 3 and summary["rows"] == 6
    best = summary["best row"]
    assert best["trial_id"] == "t1" and best["prompts"] == PROMPTS
    assert best["minus_centroid"] == pytest.approx([0.04, 0.04, 0.04])  # t1 is base + 0.05; the two centroid seeds average base + 0.01
    assert summary["best trial of the sweep itself"]["trial_id"] == "t1"
    scheduler = summary["scheduler"]
    assert np.isfinite(scheduler["leave_one_out_rmse"]) and scheduler["others_mean_rmse"] > 0
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "3 trials and 3 warm-start rows" in text and "| warm-start-2 | WARM_START | 0.000 | 0.000 | 0.000 | 1.000 |" in text

    assert sorted(p.name for p in example.iterdir()) == ["results.csv", "runs", "sweep.yaml"]
    assert sorted(p.name for p in (example / "runs" / "t1").iterdir()) == ["eval.json", "generations.jsonl"]  # no checkpoints
    from search.analysis import load_sweep

    assert len(load_sweep(example).own_trials()) == 3


def test_a_best_warm_start_row_is_read_from_its_claims_run(bench, sweep, tmp_path):
    sweep_dir, base = sweep
    table = pd.read_csv(sweep_dir / "results.csv")
    table.loc[table["trial_id"].isin(["t1", "t3"]), "objective"] = 0.0  # now the best row is the second centroid seed
    table.to_csv(sweep_dir / "results.csv", index=False)
    from search.analysis import load_sweep

    _, data = bench.summarise(load_sweep(sweep_dir))
    assert data["best row"]["trial_id"] == "warm-start-1" and data["best row"]["minus_centroid"][0] == pytest.approx(0.01)
    assert data["best trial of the sweep itself"]["trial_id"] == "t2" and data["best trial of the sweep itself"]["minus_centroid"][0] == pytest.approx(-0.03)
