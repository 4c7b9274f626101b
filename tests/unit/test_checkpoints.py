"""Checkpoints: manifest, verification, fallback past damaged ones, rotation that keeps the last
good one, and training state that loads with weights_only (no model: a module that saves itself)."""

import logging
import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lambda_dpo.checkpoints import (
    MANIFEST,
    TRAINING_STATE,
    CheckpointError,
    checkpoint_dirs,
    checkpoint_problem,
    latest_checkpoint,
    load_training_state,
    require_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


class SavingModule(torch.nn.Linear):
    def __init__(self):
        super().__init__(64, 64)

    def save_pretrained(self, directory, safe_serialization=True):
        directory.mkdir(parents=True, exist_ok=True)
        save_file({name: value.detach().contiguous() for name, value in self.state_dict().items()}, directory / "model.safetensors")


def save(run_dir, step, model, keep=2):
    return save_checkpoint(run_dir, step, model, {"rng": rng_state()}, lambda d: (d / "config.yaml").write_text("seed: 0\n"), keep=keep)


def test_a_saved_checkpoint_has_a_manifest_and_verifies(tmp_path):
    checkpoint = save(tmp_path, 1, SavingModule())
    assert (checkpoint / MANIFEST).is_file() and checkpoint_problem(checkpoint) is None
    assert latest_checkpoint(tmp_path) == checkpoint


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_a_damaged_newest_checkpoint_is_named_and_passed_over(tmp_path, caplog, damage):
    """A truncated or overwritten model.safetensors used to kill the resume with a SafetensorError."""
    model = SavingModule()
    older = save(tmp_path, 1, model)
    newest = save(tmp_path, 2, model)
    weights = newest / "model.safetensors"
    size = weights.stat().st_size
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: size // 2])
    elif damage == "garbage":
        weights.write_bytes(b"\xff" * size)
    else:
        weights.unlink()
    assert "model.safetensors" in checkpoint_problem(newest)
    with caplog.at_level(logging.WARNING, logger="lambda_dpo"):
        assert latest_checkpoint(tmp_path) == older
    assert f"checkpoint {newest} is damaged (model.safetensors" in caplog.text
    assert latest_checkpoint(tmp_path, verify=False) == newest


def test_rotation_never_removes_the_newest_checkpoint_with_finite_weights(tmp_path):
    """keep_checkpoints used to rotate the last finite checkpoints away once NaN ones were saved."""
    model = SavingModule()
    save(tmp_path, 1, model, keep=1)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    for step in (2, 3, 4):
        save(tmp_path, step, model, keep=1)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-1", "step-4"]
    assert "non-finite" in checkpoint_problem(tmp_path / "checkpoints" / "step-4")
    assert latest_checkpoint(tmp_path).name == "step-1"  # a resume goes back to the finite weights
    with torch.no_grad():
        model.weight.fill_(0.5)
    save(tmp_path, 5, model, keep=1)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-5"]


def test_a_half_written_checkpoint_is_not_a_checkpoint(tmp_path):
    for name in ("step-5", "step-10.partial", "step-20"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / TRAINING_STATE).write_bytes(b"")
    (tmp_path / "checkpoints" / "step-30").mkdir()  # no training state yet
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-5", "step-20"]


def test_training_state_round_trips_every_rng_under_weights_only(tmp_path):
    model = SavingModule()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 64)).sum().backward()
    optimizer.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    checkpoint = save_checkpoint(tmp_path, 1, model, {"optimizer": optimizer.state_dict(), "rng": rng_state()}, lambda d: None, keep=2)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    state = load_training_state(checkpoint)
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert state["step"] == 1 and state["optimizer"]["state"][0]["exp_avg"].shape == (64, 64)


class RunsCode:
    def __reduce__(self):
        return (print, ("this ran while loading a checkpoint",))


def test_a_training_state_with_a_pickled_callable_is_refused(tmp_path, capsys):
    checkpoint = save(tmp_path, 1, SavingModule())
    torch.save({"step": 1, "rng": RunsCode()}, checkpoint / TRAINING_STATE)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_training_state(checkpoint)
    assert "this ran" not in capsys.readouterr().out


def test_only_a_checkpoint_directory_is_taken_for_one(tmp_path):
    """`evaluate RUN_DIR` used to write a tokenizer and reference log-probs two levels above it."""
    checkpoint = save(tmp_path, 3, SavingModule())
    assert require_checkpoint(checkpoint) == checkpoint
    with pytest.raises(CheckpointError, match=f"it is a run directory: pass one of its checkpoints, e.g. {checkpoint}"):
        require_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        require_checkpoint(tmp_path / "elsewhere")
