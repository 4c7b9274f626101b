"""`lambda-dpo export`: what it writes loads in plain transformers and PEFT, in a process that never
imports lambda_dpo, and answers as the checkpoint does; bad sources and destinations are refused in one line."""

import shutil

import pytest

from lambda_dpo.cli import main
from lambda_dpo.config import load_config
from lambda_dpo.generate import Generator
from lambda_dpo.train import train
from lambda_dpo.train_config import TrainConfig
from tests.exported import NEW_TOKENS, PROMPT, plain_answer

pytestmark = pytest.mark.integration

TINY = "configs/train/tiny.yaml"


def checkpoint_answer(checkpoint) -> str:
    return Generator(checkpoint)(PROMPT, max_new_tokens=NEW_TOKENS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A full fine-tune and a LoRA run of the tiny default, a few steps each."""
    root = tmp_path_factory.mktemp("export")
    common = ["data.source=synthetic:120", "optim.max_steps=6", "sft.steps=4", "eval.every=0", "eval.fraction=0.2", "save_every=6"]
    full = train(load_config(TrainConfig, TINY, [f"output_dir={root / 'full'}", *common])).checkpoint
    lora = train(load_config(TrainConfig, TINY, [f"output_dir={root / 'lora'}", *common, "model.lora.enabled=true", "model.lora.r=4",
                                                  "optim.learning_rate=5e-3"])).checkpoint
    return root, full, lora


def test_a_full_fine_tune_exports_as_a_model_transformers_loads_and_it_answers_alike(runs, capsys):
    root, full, _ = runs
    assert main(["export", str(full), str(root / "full-export")]) == 0
    assert "full model written to" in capsys.readouterr().out
    out = root / "full-export"
    assert {"config.json", "generation_config.json", "model.safetensors", "README.md"} <= {p.name for p in out.iterdir()}
    assert plain_answer(out) == checkpoint_answer(full) != ""


def test_a_lora_run_exports_merged_and_as_an_adapter_and_both_answer_as_the_checkpoint(runs):
    root, _, lora = runs
    expected = checkpoint_answer(lora)
    assert main(["export", str(lora), str(root / "merged")]) == 0  # merged is a LoRA run's default
    assert not (root / "merged" / "adapter_config.json").exists() and (root / "merged" / "model.safetensors").exists()
    assert plain_answer(root / "merged") == expected
    assert main(["export", str(lora), str(root / "adapter"), "--adapter"]) == 0
    assert (root / "adapter" / "adapter_model.safetensors").exists()
    assert plain_answer(root / "adapter", "adapter") == expected


def test_the_model_card_has_metadata_training_settings_metrics_and_the_command(runs):
    root, full, _ = runs
    out = root / "card"
    assert main(["export", str(full), str(out)]) == 0
    card = (out / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: \"transformers\"" in front and "base_model:" in front
    assert "λ: `dirichlet`" in card and "loss: `lambda_dpo`" in card and "steps: 6 of 6" in card
    assert "| `top1_accuracy/mixed` |" in card  # the run's final evaluation was on this checkpoint
    assert f"lambda-dpo export {full} {out}" in card


def test_a_conditioned_policys_card_shows_how_to_write_the_lambda_preamble(tmp_path):
    checkpoint = train(load_config(TrainConfig, "configs/train/tiny-conditioned.yaml", [
        f"output_dir={tmp_path / 'run'}", "data.source=synthetic:120", "optim.max_steps=2", "sft.steps=2", "eval.every=0", "eval.fraction=0.2", "save_every=2",
    ])).checkpoint
    assert main(["export", str(checkpoint), str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Steering by λ" in card and "preference weights: helpfulness=0.25" in card


def test_a_sweep_directory_exports_its_best_trials_final_checkpoint(runs, tmp_path, capsys):
    from search.analysis import EXAMPLE, load_sweep

    _, full, _ = runs
    sweep = tmp_path / "sweep"
    shutil.copytree(EXAMPLE, sweep, ignore=shutil.ignore_patterns("runs"))
    best = load_sweep(sweep).best(ran_here=True)
    shutil.copytree(full.parent.parent, sweep / "runs" / best["trial_id"])
    assert main(["export", str(sweep), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"trial {best['trial_id']}, the best by top1_accuracy/mixed ({best['objective']:.4f})" in out
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_what_cannot_be_exported_is_refused_in_one_line(runs, capsys):
    root, full, lora = runs

    def refused(argv, expected):
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err

    refused([str(full.parent.parent), str(root / "x")], "is not a checkpoint directory (RUN_DIR/checkpoints/step-N); it is a run directory")
    (root / "taken").mkdir()
    refused([str(full), str(root / "taken")], "exists; choose another directory or pass --force")
    refused([str(full), str(root / "x"), "--adapter"], "is a full fine-tune (model.lora.enabled: false)")
    damaged = root / "damaged" / "checkpoints" / full.name
    shutil.copytree(full, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    refused([str(damaged), str(root / "x")], "is damaged (model.safetensors has 100 bytes")
    assert not (root / "x").exists()
    assert main(["export", str(full), str(root / "taken"), "--force"]) == 0  # --force replaces it
