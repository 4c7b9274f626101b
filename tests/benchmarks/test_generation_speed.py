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


def test_a_trained_adapter_decodes_alike_on_another_configs_held_out_prompts(monkeypatch, tmp_path, tiny_pretrained, capsys):
    """--checkpoint with --config: the checkpoint's policy (its LoRA adapter), the config's prompts."""
    monkeypatch.syspath_prepend(str(PATH.parent))
    import generation_speed

    from lambda_dpo.config import load_config
    from lambda_dpo.train import train
    from lambda_dpo.train_config import TrainConfig

    data = write_jsonl(tmp_path / "verifiable.jsonl", verifiable_records(40))
    overrides = [f"model.name_or_path={tiny_pretrained}", "model.tokenizer=null", f"data.source={data}", "data.format=listwise",
                 "data.dimensions=[instruction_following,correctness,conciseness,detail]", "data.max_prompt_length=96", "data.max_length=160",
                 "eval.fraction=0.5", "sft.steps=0"]
    trained = [*overrides, f"output_dir={tmp_path / 'run'}", "model.lora.enabled=true", "optim.max_steps=2", "save_every=2", "eval.every=0"]
    checkpoint = train(load_config(TrainConfig, "configs/train/tiny.yaml", trained)).checkpoint
    other = [*overrides, "eval.fraction=0.25"]  # another held-out split than the run's
    code = generation_speed.main(["--checkpoint", str(checkpoint), "--config", "configs/train/tiny.yaml", "--max-new-tokens", "8", *other])
    out = capsys.readouterr().out
    assert code == 0 and "10 held-out prompts" in out and "identical responses: 10 of 10" in out
