"""The generation-speed benchmark: both paths on the same prompts, identical responses, its figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factories import verifiable_records, write_jsonl

PATH = Path(__file__).parents[2] / "benchmarks" / "generation_speed.py"

pytestmark = pytest.mark.integration


def test_both_paths_give_the_same_responses_and_the_figures_are_written(monkeypatch, tmp_path, tiny_pretrained, capsys):
    monkeypatch.syspath_prepend(str(PATH.parent))
    import generation_speed

    data = write_jsonl(tmp_path / "verifiable.jsonl", verifiable_records(40))
    figures = tmp_path / "speed.json"
    overrides = [f"model.name_or_path={tiny_pretrained}", "model.tokenizer=null", f"data.source={data}", "data.format=listwise",
                 "data.dimensions=[instruction_following,correctness,conciseness,detail]", "data.max_prompt_length=96", "data.max_length=160",
                 "eval.fraction=0.5", "eval.generation_batch_size=7", "sft.steps=0"]
    code = generation_speed.main(["--config", "configs/train/tiny.yaml", "--max-new-tokens", "12", "--json", str(figures), *overrides])
    out = json.loads(figures.read_text())
    assert code == 0 and out["identical"] == out["of"] == 20 and out["first_difference"] is None
    assert out["old"]["new_tokens"] == out["new"]["new_tokens"] > 20 and out["new"]["batch_size"] == 7
    assert "identical responses: 20 of 20" in capsys.readouterr().out
