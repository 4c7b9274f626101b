"""Scoring by generation on the tiny model: eval.generate in training, evaluate --generate, compare."""

from __future__ import annotations

import json
import math

import pytest

from lambda_dpo.cli import main
from lambda_dpo.config import load_config
from lambda_dpo.checkpoint_eval import GENERATIONS
from lambda_dpo.checkpoints import latest_checkpoint
from lambda_dpo.train import train
from lambda_dpo.train_config import TrainConfig
from lambda_dpo.verifiable.verifiers import VERIFIABLE_DIMENSIONS
from tests.factories import verifiable_records, write_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def verifiable_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("verifiable")
    data = write_jsonl(root / "verifiable.jsonl", verifiable_records(60))
    overrides = [
        f"output_dir={root / 'run'}", f"data.source={data}", f"data.dimensions=[{','.join(VERIFIABLE_DIMENSIONS)}]",
        "data.max_prompt_length=96", "data.max_length=160", "optim.max_steps=6", "sft.steps=4", "eval.every=0",
        "eval.fraction=0.2", "eval.generate=true", "eval.max_new_tokens=12", "save_every=6",
    ]
    config = load_config(TrainConfig, "configs/train/tiny.yaml", overrides)
    return config, train(config)


def test_a_run_scored_by_generation_reports_every_verifiable_metric_and_keeps_each_response(verifiable_run):
    config, result = verifiable_run
    names = {f"verifiable/{d}" for d in VERIFIABLE_DIMENSIONS} | {"verifiable/mixed", "generation/mean_words", "generation/mean_new_tokens", "generation/unfinished"}
    assert names <= set(result.metrics)
    assert all(0 <= result.metrics[name] <= 1 for name in names if name.startswith("verifiable/") and not math.isnan(result.metrics[name]))
    rows = [json.loads(line) for line in (result.run_dir / GENERATIONS).read_text().splitlines()]
    assert len(rows) == 12 and all(row["new_tokens"] <= 12 for row in rows)  # 20% of 60 held out
    assert result.metrics["generation/mean_new_tokens"] == pytest.approx(sum(row["new_tokens"] for row in rows) / 12)


def test_evaluate_generate_reproduces_the_run_and_compare_pairs_it_with_the_reference(verifiable_run, tmp_path, capsys):
    config, result = verifiable_run
    checkpoint = latest_checkpoint(result.run_dir)
    assert main(["evaluate", str(checkpoint), "--generate"]) == 0
    out = json.loads((checkpoint / "generation.json").read_text())
    for name, value in result.metrics.items():
        if name.startswith(("verifiable/", "generation/")) and not math.isnan(value):
            assert out["metrics"][name] == pytest.approx(value, abs=1e-9), name  # greedy: the same responses again
    assert main(["evaluate", str(checkpoint), "--generate", "--reference", "--max-new-tokens", "6"]) == 0
    reference = json.loads((checkpoint / "generation-reference.json").read_text())
    assert reference["reference"] and reference["metrics"]["generation/mean_new_tokens"] <= 6
    capsys.readouterr()
    assert main(["compare", str(checkpoint / "generation.jsonl"), str(checkpoint / "generation-reference.jsonl")]) == 0
    table = capsys.readouterr().out
    assert "verifiable/mixed" in table and "95% bootstrap interval" in table
    assert main(["compare", str(checkpoint / "generation.jsonl"), str(tmp_path / "missing.jsonl")]) == 2
    assert main(["evaluate", str(checkpoint), "--reference"]) == 2
    assert "use it with --generate" in capsys.readouterr().err
