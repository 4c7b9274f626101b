"""The objective-agreement report: runs found by their eval.json, grouped by data, ρ with an interval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PATH = Path(__file__).parents[2] / "benchmarks" / "objective_agreement.py"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(PATH.parent))
    import objective_agreement

    return objective_agreement


def write_run(directory: Path, data: str, cheap: float, expensive: float | None) -> None:
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(f"data:\n  source: somewhere/{data}\n")
    metrics = {"top1_accuracy/mixed": cheap} | ({"verifiable/mixed": expensive} if expensive is not None else {})
    (directory / "eval.json").write_text(json.dumps({"step": 30, "metrics": metrics}))


def test_rho_is_reported_per_data_set_and_over_all_runs(bench, tmp_path, capsys):
    for i in range(6):
        write_run(tmp_path / "a" / f"run-{i}", "v1.jsonl", i / 10, i / 20)  # the same order: ρ = +1
        write_run(tmp_path / "b" / f"run-{i}", "v2.jsonl", i / 10, -i / 20)  # reversed: ρ = −1
    write_run(tmp_path / "b" / "ranking-only", "v2.jsonl", 0.5, None)  # no generation score: not a comparable run
    assert len(bench.trained_runs([tmp_path / "a", tmp_path / "b"])) == 12
    assert bench.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "| v1.jsonl | 6 | +1.00 | [+1.00, +1.00] |" in out and "| v2.jsonl | 6 | -1.00 |" in out and "| all | 12 |" in out
