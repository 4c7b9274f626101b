"""Sweep configs, searcher selection, per-trial configs and the sweep's output files, without Ray."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lambda_dpo.cli import main
from lambda_dpo.config import ConfigError
from lambda_dpo.lambdas import build_sampler, read_schedule
from search.searcher import GridLambdaSearcher, PolynomialLambdaSearcher, RandomLambdaSearcher
from lambda_dpo.config import with_absolute_paths
from search.analysis import best_trial, centroid_trial, write_outputs
from search.sweep_config import OBJECTIVE, build_searcher, for_trials, load_sweep_config, trial_train_config

DIMENSIONS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]


def test_tiny_sweep_takes_the_tiny_train_config_under_its_own_train_keys():
    config = load_sweep_config("configs/sweep/tiny.yaml")
    assert config.train.model.name_or_path == "configs/models/tiny-llama"  # from configs/train/tiny.yaml
    assert config.train.eval.every == 0  # the sweep's own `train:` key wins
    assert config.searcher.num_trials >= 8 and config.searcher.max_concurrent == 2
    overridden = load_sweep_config("configs/sweep/tiny.yaml", ["train.optim.max_steps=7", "searcher.num_trials=3"])
    assert overridden.train.optim.max_steps == 7 and overridden.searcher.num_trials == 3


@pytest.mark.parametrize(
    "override, message",
    [
        ("scheduler.degree=2", "key 'scheduler' was renamed 'lambda_scheduler'"),
        ("tracking=[mlflow,neptune]", "tracking must list each of mlflow, wandb at most once"),
        ("tune.trial_scheduler=hyperband", "tune.trial_scheduler"),
        ("tune.trial_scheduler=asha", "set train.eval.every"),
        ("searcher.design=corners", "searcher.design"),
        ("tune.reduction_factor=1", "tune.reduction_factor"),
        ("searcher.name=hyperband", "searcher.name"),
        ("train.optim.nope=1", "train.optim.nope"),
        ("lambda_mode=soft", "lambda_mode"),
        ("resources.num_workers=3", "divisible"),
        ("resources.driver_cpus=0", "driver_cpus"),
        ("resources.gpus_per_worker=1.5", "whole number"),
        ("searcher.initial_points=[[0.5,0.6,0,0]]", r"searcher.initial_points\[0\]"),
        ("train_config=configs/train/missing.yaml", "missing.yaml"),
        ("objective=verifiable/mixed", "scored by generation, which the trials do not run: set train.eval.generate=true"),
        ("train.eval.generate=true", "have no verifier"),  # the tiny data's dimensions cannot be checked by rule
    ],
)
def test_bad_sweep_configs_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep_config("configs/sweep/tiny.yaml", [override])


def test_each_searcher_name_builds_its_searcher():
    for name, kind in (("polynomial", PolynomialLambdaSearcher), ("random", RandomLambdaSearcher), ("grid", GridLambdaSearcher)):
        searcher = build_searcher(load_sweep_config("configs/sweep/tiny.yaml", [f"searcher.name={name}"]))
        assert isinstance(searcher, kind) and searcher.metric == OBJECTIVE and searcher.mode == "max"
    polynomial = build_searcher(load_sweep_config("configs/sweep/tiny.yaml", ["lambda_scheduler.temperature=7"]))
    assert polynomial.lambda_scheduler.temperature == 7
    optuna = build_searcher(load_sweep_config("configs/sweep/tiny.yaml", ["searcher.name=optuna", "mode=min"]))
    assert type(optuna).__name__ == "OptunaSearch" and optuna.mode == "min"


def test_trial_config_fixes_lambda_or_centres_a_dirichlet_on_it(tmp_path):
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    fixed = trial_train_config(load_sweep_config("configs/sweep/tiny.yaml", [f"storage_path={tmp_path}"]), weights, "abc")
    assert fixed.lambdas.sampler == "fixed" and fixed.lambdas.weights == pytest.approx(list(weights))
    assert Path(fixed.output_dir) == tmp_path / "tiny" / "runs" / "abc"
    centred = trial_train_config(load_sweep_config("configs/sweep/tiny.yaml", ["lambda_mode=dirichlet", "lambda_concentration=40"]), weights, "abc")
    sampler = build_sampler(centred.lambdas, DIMENSIONS)
    assert np.allclose(sampler.alpha, 40 * weights)


def test_trials_share_the_sweeps_reference_cache_unless_the_train_config_names_one(tmp_path):
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    sweep = load_sweep_config("configs/sweep/tiny.yaml", [f"storage_path={tmp_path}"])
    first, second = (trial_train_config(sweep, weights, trial) for trial in ("abc", "def"))
    assert first.reference_cache == second.reference_cache == str(tmp_path / "tiny" / "reference_logps")
    named = load_sweep_config("configs/sweep/tiny.yaml", [f"storage_path={tmp_path}", f"train.reference_cache={tmp_path / 'shared'}"])
    assert trial_train_config(named, weights, "abc").reference_cache == str(tmp_path / "shared")


def test_local_paths_become_absolute_and_hub_ids_stay(monkeypatch, tmp_path):
    config = with_absolute_paths(load_sweep_config("configs/sweep/tiny.yaml").train)
    assert Path(config.model.name_or_path).is_absolute() and Path(config.model.name_or_path).is_dir()
    assert config.data.source == "synthetic:4000" and config.model.tokenizer == "train"
    # What a trial receives does not depend on the directory Tune runs it in.
    bound = for_trials(load_sweep_config("configs/sweep/tiny.yaml"))
    remote = for_trials(load_sweep_config("configs/sweep/tiny.yaml", ["storage_path=s3://bucket/sweeps"]))
    monkeypatch.chdir(tmp_path)
    assert bound.ray_storage() == str(Path(__file__).resolve().parents[3] / "runs" / "sweeps" / "tiny")
    assert bound.sweep_dir() == Path(bound.output_dir) and Path(bound.output_dir).is_absolute()
    assert remote.ray_storage() == "s3://bucket/sweeps/tiny"


def fake_results() -> pd.DataFrame:
    rows = [np.eye(4)[k] for k in range(4)] + [np.full(4, 0.25), [0.4, 0.4, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]]
    scores = [0.50, 0.48, 0.55, 0.52, 0.60, 0.63, np.nan]
    table = pd.DataFrame(rows, columns=[f"lambda/{d}" for d in DIMENSIONS])
    table.insert(0, "status", ["TERMINATED"] * 6 + ["ERROR"])
    table.insert(0, "trial_id", [f"t{i}" for i in range(7)])
    table[OBJECTIVE] = scores
    return table


def test_outputs_best_and_centroid_from_a_results_table(tmp_path):
    config = load_sweep_config("configs/sweep/tiny.yaml", [f"output_dir={tmp_path}"])
    table = fake_results()
    written = write_outputs(config, table)
    assert pd.read_csv(written["results"]).shape == table.shape
    schedule = read_schedule(written["schedule"])
    assert schedule.dimensions == tuple(DIMENSIONS) and np.isclose(schedule.probabilities.sum(), 1)
    assert written["objective_plot"].stat().st_size > 1000 and written["schedule_plot"].exists()
    assert best_trial(config, table)["trial_id"] == "t5"
    assert centroid_trial(config, table)["trial_id"] == "t4"
    minimising = load_sweep_config("configs/sweep/tiny.yaml", ["mode=min"])
    assert best_trial(minimising, table)["trial_id"] == "t1"


def test_sweep_command_refuses_overrides_with_resume(capsys, tmp_path):
    assert main(["sweep", "--resume", str(tmp_path), "searcher.num_trials=3"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(tmp_path)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_resume_point_is_the_newer_of_rays_copy_and_the_run_directorys_checkpoint(tmp_path):
    from lambda_dpo.checkpoints import TRAINING_STATE
    from search.sweep import resume_point

    def checkpoint(path):
        path.mkdir(parents=True)
        (path / TRAINING_STATE).write_bytes(b"")
        return path

    run_dir = tmp_path / "run"
    assert resume_point(None, None, run_dir) is None
    local = checkpoint(run_dir / "checkpoints" / "step-150")
    download = checkpoint(tmp_path / "tmp8f3k2")  # a remote checkpoint, downloaded under any name
    assert resume_point("s3://bucket/sweep/train/t1/step-100", download, run_dir) == local
    assert resume_point("s3://bucket/sweep/train/t1/step-200", download, run_dir) == download
    (run_dir / "checkpoints" / "step-250.partial").mkdir()  # a save cut short is not a checkpoint
    assert resume_point("s3://bucket/sweep/train/t1/step-200", download, run_dir) == download


def test_a_trial_restore_passes_over_a_damaged_checkpoint(tmp_path, caplog):
    """A damaged newest checkpoint (Ray's copy or the run directory's) used to kill the trial's resume."""
    import logging

    from lambda_dpo.checkpoints import write_manifest
    from search.sweep import resume_point

    def checkpoint(path, step):
        path.mkdir(parents=True)
        (path / "adapter_model.safetensors").write_bytes(b"weights" * 10)
        (path / "training_state.pt").write_bytes(b"state")
        write_manifest(path, step=step, finite=True)
        return path

    run_dir = tmp_path / "run"
    older = checkpoint(run_dir / "checkpoints" / "step-100", 100)
    newer = checkpoint(run_dir / "checkpoints" / "step-150", 150)
    download = checkpoint(tmp_path / "tmp8f3k2", 200)
    (download / "adapter_model.safetensors").write_bytes(b"weights")  # cut short in the upload
    with caplog.at_level(logging.WARNING, logger="lambda_dpo"):
        assert resume_point("s3://bucket/sweep/train/t1/step-200", download, run_dir) == newer
        (newer / "adapter_model.safetensors").write_bytes(b"garbage" * 10)
        assert resume_point("s3://bucket/sweep/train/t1/step-200", download, run_dir) == older
    assert "step-200 is damaged (adapter_model.safetensors has 7 bytes" in caplog.text
    assert f"checkpoint {newer} is damaged (adapter_model.safetensors does not match its SHA-256" in caplog.text


class FakeResult:
    def __init__(self, path, weights, metrics, error=None):
        self.path, self.config, self.metrics, self.error = path, {"lambda": dict(zip(DIMENSIONS, weights))}, metrics, error


def interrupted_results():
    return [
        FakeResult("/s/tune/trial-000-a", [1, 0, 0, 0], {"objective": 0.61, "step": 30, "done": True}),
        FakeResult("/s/tune/trial-001-b", [0, 1, 0, 0], {"objective": float("nan"), "step": 10, "done": False}),  # Ctrl-C mid-run
        FakeResult("/s/tune/trial-002-c", [0, 0, 1, 0], {}),  # never reported
    ]


def test_interrupted_trials_are_marked_so_and_none_counts_as_finished(tmp_path):
    """An interrupted sweep's results.csv used to mark the stopped trials TERMINATED ("ok")."""
    from search.analysis import results_table

    config = load_sweep_config("configs/sweep/tiny.yaml", [f"output_dir={tmp_path}"])
    table = results_table(config, interrupted_results())
    assert table["status"].tolist() == ["TERMINATED", "INTERRUPTED", "INTERRUPTED"]
    assert table["objective"].notna().tolist() == [True, False, False]


def test_the_sweep_command_says_an_interrupted_sweep_can_be_resumed(tmp_path, monkeypatch, capsys):
    import search.sweep

    monkeypatch.setattr(search.sweep, "run_sweep", lambda config, resume=False, verbose=False: interrupted_results())
    assert main(["sweep", "configs/sweep/tiny.yaml", f"output_dir={tmp_path}"]) == 130
    out = capsys.readouterr().out
    assert "sweep interrupted: 1 of 8 trials finished, 2 stopped before their end" in out
    assert f"lambda-dpo sweep --resume {tmp_path}" in out and "no trial finished" not in out
    monkeypatch.setattr(search.sweep, "run_sweep", lambda config, resume=False, verbose=False: interrupted_results()[1:])
    assert main(["sweep", "configs/sweep/tiny.yaml", f"output_dir={tmp_path / 'b'}"]) == 130
    assert "no trial finished" not in capsys.readouterr().out


def test_early_stopping_needs_evaluations_during_training_of_the_objective():
    base = ["tune.trial_scheduler=asha", "train.eval.every=50", "train.optim.max_steps=300"]
    config = load_sweep_config("configs/sweep/tiny.yaml", base + ["tune.grace_period=50"])
    searcher = build_searcher(config)
    assert searcher.final_step == 300 and build_searcher(load_sweep_config("configs/sweep/tiny.yaml")).final_step is None
    with pytest.raises(ConfigError, match="no trial could be stopped"):
        load_sweep_config("configs/sweep/tiny.yaml", base + ["tune.grace_period=300"])
    with pytest.raises(ConfigError, match="max_steps, not train.optim.epochs"):
        load_sweep_config("configs/sweep/tiny.yaml", base + ["train.optim.epochs=1"])
    with pytest.raises(ConfigError, match="scored only at the end"):
        load_sweep_config("configs/sweep/smollm2-135m-verifiable.yaml", ["tune.trial_scheduler=asha", "train.eval.every=10"])


def test_the_trial_scheduler_is_asha_on_the_objective_at_each_evaluation():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from search.sweep import build_trial_scheduler

    assert isinstance(build_trial_scheduler(load_sweep_config("configs/sweep/tiny.yaml")), FIFOScheduler)
    asha = build_trial_scheduler(load_sweep_config("configs/sweep/tiny.yaml", ["tune.trial_scheduler=asha", "train.eval.every=50", "tune.grace_period=50", "tune.reduction_factor=3"]))
    assert isinstance(asha, ASHAScheduler)
    assert (asha._time_attr, asha.metric, asha._max_t, asha._reduction_factor) == ("evaluated_step", "objective", 300, 3)
    assert [milestone for milestone, _ in asha._brackets[0]._rungs] == [150, 50]


def warm_csv(tmp_path, rows) -> Path:
    path = tmp_path / "earlier" / "results.csv"
    path.parent.mkdir()
    pd.DataFrame([{"trial_id": f"x{k}", "status": "TERMINATED", **{f"lambda/{d}": w for d, w in zip(DIMENSIONS, weights)}, "objective": score}
                  for k, (weights, score) in enumerate(rows)]).to_csv(path, index=False)
    return path


def test_a_warm_start_reads_an_earlier_sweeps_results_and_skips_what_it_ran(tmp_path):
    from search.analysis import results_table

    path = warm_csv(tmp_path, [([0.25] * 4, 0.61), ([0.625, 0.125, 0.125, 0.125], 0.55), ([0, 1, 0, 0], float("nan"))])
    config = load_sweep_config("configs/sweep/tiny.yaml", [f"searcher.warm_start={path}", f"output_dir={tmp_path / 'new'}"])
    searcher = build_searcher(config)
    assert [o["score"] for o in searcher.observations] == [0.61, 0.55]  # the unfinished row is left out
    first = np.array([[searcher.suggest(f"t{k}")["lambda"][d] for d in DIMENSIONS] for k in range(3)])
    assert np.allclose(first, 0.125 + 0.5 * np.eye(4)[1:])  # the centroid and the first axial point ran already
    table = results_table(config, [])
    assert table["status"].tolist() == ["WARM_START", "WARM_START"] and table["objective"].tolist() == [0.61, 0.55]
    assert best_trial(config, table)["trial_id"] == "warm-start-0"


def test_a_bad_warm_start_is_refused_naming_the_file(tmp_path):
    with pytest.raises(ConfigError, match="warm_start works with the polynomial, random and grid searchers"):
        load_sweep_config("configs/sweep/tiny.yaml", ["searcher.name=optuna", "searcher.warm_start=x.csv"])
    config = load_sweep_config("configs/sweep/tiny.yaml", [f"searcher.warm_start={tmp_path / 'missing.csv'}"])
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        build_searcher(config)
    path = warm_csv(tmp_path, [([0.5, 0.6, 0, 0], 0.5)])
    with pytest.raises(ValueError, match=r"results.csv: λ rows"):
        build_searcher(load_sweep_config("configs/sweep/tiny.yaml", [f"searcher.warm_start={path}"]))


def test_a_trial_that_early_stopping_ended_is_stopped_not_interrupted(tmp_path):
    from search.analysis import results_table
    from search.trial_log import events_path

    config = load_sweep_config("configs/sweep/tiny.yaml", [f"output_dir={tmp_path}"])
    events_path(tmp_path).parent.mkdir(parents=True)
    events_path(tmp_path).write_text('{"event": "stopped", "trial_id": "b", "number": "2", "step": 10}\n')
    results = interrupted_results()
    results[1].metrics = {"objective": 0.41, "step": 10, "done": True}  # what Tune reports for a trial ASHA stopped
    table = results_table(config, results)
    assert table["status"].tolist() == ["TERMINATED", "STOPPED", "INTERRUPTED"]
    assert table["objective"].notna().tolist() == [True, False, False]  # a partial score is not a final objective


def test_each_tracker_is_rays_own_callback_logging_where_it_should(tmp_path, monkeypatch):
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.air.integrations.wandb import WandbLoggerCallback

    from search.sweep import tracking_callbacks

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    config = load_sweep_config("configs/sweep/tiny.yaml", ["tracking=[mlflow,wandb]", f"output_dir={tmp_path}"])
    mlflow, wandb = tracking_callbacks(config)
    assert isinstance(mlflow, MLflowLoggerCallback) and isinstance(wandb, WandbLoggerCallback)
    assert mlflow.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}" and mlflow.experiment_name == "tiny"
    assert wandb.project == "tiny" and "mode" not in wandb.kwargs
    monkeypatch.setenv("WANDB_MODE", "offline")  # the logging actor does not see this shell's environment
    assert tracking_callbacks(config)[1].kwargs["mode"] == "offline"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_callbacks(config)[0].tracking_uri == "http://mlflow.example:5000"
    assert tracking_callbacks(load_sweep_config("configs/sweep/tiny.yaml")) == []


def test_verbose_reaches_the_sweep_and_the_default_is_quiet(tmp_path, monkeypatch):
    import search.sweep

    seen = []
    monkeypatch.setattr(search.sweep, "run_sweep", lambda config, resume=False, verbose=False: seen.append(verbose) or interrupted_results()[:1])
    assert main(["sweep", "configs/sweep/tiny.yaml", f"output_dir={tmp_path / 'a'}"]) == 0
    assert main(["sweep", "configs/sweep/tiny.yaml", f"output_dir={tmp_path / 'b'}", "--verbose"]) == 0
    assert seen == [False, True]


def test_a_finished_sweep_reprinted_after_a_resume_keeps_its_finished_trials(tmp_path):
    """`sweep --resume` of a finished sweep (a second `make demo`) got Tune's `done` back for one
    trial only and rewrote results.csv with the other seven INTERRUPTED and their objectives lost."""
    from search.analysis import results_table

    config = load_sweep_config("configs/sweep/tiny.yaml", [f"output_dir={tmp_path}"])
    results = interrupted_results()
    results[1].metrics = {"objective": 0.58, "step": 300, "trial_id": "b"}  # finished, but no `done` after the restore
    (tmp_path / "runs" / "b").mkdir(parents=True)
    (tmp_path / "runs" / "b" / "eval.json").write_text("{}")
    table = results_table(config, results)
    assert table["status"].tolist() == ["TERMINATED", "TERMINATED", "INTERRUPTED"]
    assert table["objective"].tolist()[:2] == [0.61, 0.58]
