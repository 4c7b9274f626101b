"""The Ray λ sweep on the session's local cluster: resume after a killed driver, a killed worker
retried from its checkpoint, data-parallel equality, and Optuna as the searcher."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from lambda_dpo.lambdas import read_schedule
from lambda_dpo.train_config import load_train_config
from lambda_dpo.config import with_absolute_paths
from search.analysis import results_table
from search.sweep import make_trainer, run_sweep
from search.sweep_config import OBJECTIVE, ResourcesConfig, build_searcher, load_sweep_config

pytestmark = pytest.mark.integration

SWEEP = "configs/sweep/tiny.yaml"
# Trials of a few seconds' training: what is tested here is the orchestration around them.
MICRO = ["train.data.source=synthetic:400", "train.optim.max_steps=30", "train.sft.steps=10", "train.save_every=10", "train.log_every=10"]
DIMENSIONS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]
LAMBDA_COLUMNS = [f"lambda/{d}" for d in DIMENSIONS]


def micro_overrides(storage: Path, name: str, *extra: str) -> list[str]:
    return [*MICRO, f"storage_path={storage}", f"name={name}", *extra]


def logged_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def searcher_state(sweep_dir: Path) -> dict:
    *_, latest = sorted((sweep_dir / "tune").glob("searcher-state-*"))  # one file per driver session
    return json.loads(latest.read_text())


def wait_for(condition, *, timeout: float, what: str, process=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


AXIAL = np.vstack([np.full(4, 0.25), 0.125 + 0.5 * np.eye(4)])  # the starting design: the centroid, then halfway to each vertex


def test_sweep_resumes_after_its_driver_is_killed_without_running_a_finished_trial_again(ray_cluster, tmp_path):
    """A warm-started sweep, killed and resumed: nothing finished is run again, the warm rows included."""
    sweep_dir = tmp_path / "resume"
    earlier = tmp_path / "earlier.csv"
    pd.DataFrame([dict(zip(LAMBDA_COLUMNS, AXIAL[0]), objective=0.55), dict(zip(LAMBDA_COLUMNS, AXIAL[1]), objective=0.45)]).to_csv(earlier, index=False)
    env = {**os.environ, "RAY_ADDRESS": ray_cluster, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "lambda_dpo.cli", "sweep"]
    log = (tmp_path / "driver.log").open("w")
    overrides = micro_overrides(tmp_path, "resume", "searcher.num_trials=6", f"searcher.warm_start={earlier}")
    driver = subprocess.Popen([*command, SWEEP, *overrides], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        finished = lambda: sorted((sweep_dir / "runs").glob("*/eval.json"))  # noqa: E731
        wait_for(lambda: len(finished()) >= 2, timeout=420, what="two finished trials", process=driver)
        time.sleep(3)  # the experiment state (searcher included) is saved every 2 s
        before = {path.parent.name: path.stat().st_mtime_ns for path in finished()}
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert not (sweep_dir / "results.csv").exists()

    resumed = subprocess.run([*command, "--resume", str(sweep_dir)], env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "best λ:" in resumed.stdout

    table = pd.read_csv(sweep_dir / "results.csv", dtype={"trial_id": str})  # an id such as 84e12345 would read as a float
    assert table["status"].tolist() == ["WARM_START"] * 2 + ["TERMINATED"] * 6 and table[OBJECTIVE].notna().all()
    # The warm rows covered the centroid and the first axial point: the rest of the design came next, in creation order.
    assert np.allclose(table[LAMBDA_COLUMNS].to_numpy()[:5], AXIAL)
    warm, table = table[:2], table[2:]
    for trial_id, mtime in before.items():  # finished before the kill: not fine-tuned again
        run_dir = sweep_dir / "runs" / trial_id
        assert (run_dir / "eval.json").stat().st_mtime_ns == mtime
        assert logged_steps(run_dir) == [10, 20, 30]

    state = searcher_state(sweep_dir)
    assert state["live"] == {} and state["num_suggested"] == 6 and state["errored"] == []
    observed = {(o["trial_id"], tuple(np.round(o["lambda"], 9)), round(o["score"], 9)) for o in state["observations"]}
    expected = {(row.trial_id, tuple(np.round(row[LAMBDA_COLUMNS].to_numpy(float), 9)), round(row[OBJECTIVE], 9)) for _, row in pd.concat([warm, table]).iterrows()}
    assert observed == expected
    for _, row in table.iterrows():  # the searcher saw exactly what each trial's evaluation wrote
        final = json.loads((sweep_dir / "runs" / row.trial_id / "eval.json").read_text())["metrics"]
        assert final["top1_accuracy/mixed"] == pytest.approx(row[OBJECTIVE], abs=1e-9)

    schedule = read_schedule(sweep_dir / "schedule.json")
    assert schedule.candidates.shape[1] == 4 and np.isclose(schedule.probabilities.sum(), 1)
    assert (sweep_dir / "objective.png").stat().st_size > 1000


def ray_train_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any("RayTrainWorker" in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def test_a_killed_worker_is_retried_and_resumes_from_its_last_checkpoint(ray_cluster, tmp_path):
    overrides = micro_overrides(
        tmp_path, "faults", "searcher.num_trials=1", "searcher.initial_points=[[0.25,0.25,0.25,0.25]]",
        "train.optim.max_steps=300", "train.save_every=50", "train.sft.steps=0",
    )
    config = load_sweep_config(SWEEP, overrides)
    killed = {}

    def kill_a_worker_after_its_second_checkpoint():
        wait_for(lambda: list(config.sweep_dir().glob("train/*/step-100")), timeout=300, what="checkpoint step-100")
        workers = ray_train_workers()
        killed["pids"] = [w.pid for w in workers]
        for worker in workers:
            worker.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_a_worker_after_its_second_checkpoint, daemon=True)
    killer.start()
    results = run_sweep(config)
    killer.join(timeout=1)
    assert killed.get("pids"), "no Ray Train worker process was found to kill"

    (result,) = list(results)
    assert result.error is None and np.isfinite(result.metrics[OBJECTIVE]) and result.metrics["step"] == 300
    # The killed worker's group was restarted and went on from a checkpoint of ≥ 100 steps: had
    # it started over, steps 10..100 would be logged twice.
    steps = logged_steps(next(config.sweep_dir().glob("runs/*")))
    assert sorted(set(steps)) == list(range(10, 301, 10)) and steps[-1] == 300
    assert all(step > 100 for step in steps if steps.count(step) > 1)  # at most the steps after the checkpoint again
    assert not any(pid in {w.pid for w in ray_train_workers()} for pid in killed["pids"])


def test_two_data_parallel_workers_follow_the_single_worker_loss_trajectory(ray_cluster, tmp_path):
    # With the offline benchmarks: under two workers rank 0 runs lm-eval while the other waits. In the
    # shared-prefix layout, so DDP wraps the scorer that runs it.
    overrides = ["data.source=synthetic:400", "optim.max_steps=20", "sft.steps=10", "eval.every=0", "log_every=1", "save_every=0",
                 "benchmarks_config=configs/eval/tiny.yaml", "data.packing=shared_prefix", "data.max_tokens_per_row=256"]
    base = load_train_config("configs/train/tiny.yaml", overrides)
    finals = {}
    for workers in (1, 2):
        config = with_absolute_paths(dataclasses.replace(base, output_dir=str(tmp_path / f"workers-{workers}")))
        make_trainer(config, name=f"ddp-{workers}", storage_path=str(tmp_path / "ray"), resources=ResourcesConfig(num_workers=workers), max_failures=0).fit()
        rows = [json.loads(line) for line in (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()]
        finals[workers] = ([row["train/loss"] for row in rows], rows[-1])
    (one, last_one), (two, last_two) = finals[1], finals[2]
    assert len(one) == len(two) == 20
    np.testing.assert_allclose(two, one, rtol=1e-5)  # measured: 2e-7 (float sums in another order)
    assert last_two["top1_accuracy/mixed"] == pytest.approx(last_one["top1_accuracy/mixed"], abs=0.01)
    assert last_two["loss"] == pytest.approx(last_one["loss"], rel=1e-3)
    assert last_two["lm_eval/mean"] == pytest.approx(last_one["lm_eval/mean"], abs=0.02)


def test_optuna_searcher_runs_a_sweep_from_a_given_first_point(ray_cluster, tmp_path):
    config = load_sweep_config(SWEEP, micro_overrides(tmp_path, "optuna", "searcher.name=optuna", "searcher.num_trials=2", "searcher.initial_points=[[0.25,0.25,0.25,0.25]]"))
    results = list(run_sweep(config))
    assert len(results) == 2 and all(r.error is None and np.isfinite(r.metrics[OBJECTIVE]) for r in results)
    assert (results_table(config, results)["status"] == "TERMINATED").all()  # finished trials are told from interrupted ones
    lambdas = [np.array([r.config["lambda"][d] for d in DIMENSIONS]) for r in results]
    assert any(np.allclose(weights, 0.25) for weights in lambdas)
    assert all(np.isclose(weights.sum(), 1) for weights in lambdas)
    # every trial's curves under one `tensorboard --logdir SWEEP/runs`; no second copy from Tune
    trial_logs = list((config.sweep_dir() / "runs").glob("*/tensorboard/events.out.tfevents.*"))
    assert len({path.parts[-3] for path in trial_logs}) == 2
    assert not list((config.sweep_dir() / "tune").rglob("events.out.tfevents.*"))
    assert list((config.sweep_dir() / "tune").rglob("progress.csv")) and list((config.sweep_dir() / "tune").rglob("result.json"))


def test_a_sweep_maximises_the_lm_eval_mean_of_the_offline_benchmarks(ray_cluster, tmp_path):
    overrides = micro_overrides(tmp_path, "lm-eval", "searcher.num_trials=2", "objective=lm_eval/mean", "train.benchmarks_config=configs/eval/tiny.yaml", "train.benchmarks.limit=40")
    config = load_sweep_config(SWEEP, overrides)
    results = run_sweep(config)
    assert len(results) == 2 and all(r.error is None for r in results)
    sweep_dir = config.sweep_dir()
    table = results_table(config, results)
    observed = {o["trial_id"]: o["score"] for o in searcher_state(sweep_dir)["observations"]}
    for result in results:
        trial_id = result.metrics["trial_id"]
        saved = json.loads((sweep_dir / "runs" / trial_id / "eval.json").read_text())["metrics"]
        # the trial's objective, its results row and what the searcher observed are the benchmark mean
        assert result.metrics[OBJECTIVE] == saved["lm_eval/mean"] == pytest.approx((saved["lm_eval/tiny_helpful_mc"] + saved["lm_eval/tiny_truthful_mc"]) / 2)
        assert table.set_index("trial_id").loc[trial_id, OBJECTIVE] == pytest.approx(saved["lm_eval/mean"])
        assert observed[trial_id] == pytest.approx(saved["lm_eval/mean"])


@pytest.fixture(scope="module")
def quiet_sweep(ray_cluster, tmp_path_factory):
    """A 2-trial sweep run as a user runs it, logging to MLflow and (offline) to wandb."""
    tmp_path = tmp_path_factory.mktemp("quiet")
    env = {**os.environ, "RAY_ADDRESS": ray_cluster, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    overrides = micro_overrides(tmp_path, "quiet", "searcher.num_trials=2", "tracking=[mlflow,wandb]")
    done = subprocess.run([sys.executable, "-m", "lambda_dpo.cli", "sweep", SWEEP, *overrides], env=env, capture_output=True, text=True, timeout=900)
    (tmp_path / "driver.out").write_text(done.stdout + "\n---stderr---\n" + done.stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp_path / "quiet", done


def test_a_sweeps_console_is_a_line_per_trial_start_and_end_and_the_ranked_table(quiet_sweep):
    sweep_dir, done = quiet_sweep
    lines = done.stdout.splitlines()
    assert len(lines) < 40, done.stdout
    for internal in ("TrainingReport(", "PlacementGroupCleaner", "core_worker"):
        assert internal not in done.stdout and internal not in done.stderr
    assert sum(" started " in line for line in lines) == 2 and sum(" finished " in line for line in lines) == 2
    assert any(line.startswith("best λ:") for line in lines)
    ray_log = (sweep_dir / "logs" / "ray.log").read_text()
    assert "TrainingReport(" in ray_log  # what used to flood the console is kept, in the sweep's logs
    assert [event["event"] for event in map(json.loads, (sweep_dir / "logs" / "trials.jsonl").read_text().splitlines())].count("finished") == 2


def test_each_trial_marks_where_its_time_went_in_order(quiet_sweep, monkeypatch):
    from lambda_dpo import timings

    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "benchmarks"))
    import sweep_overhead

    sweep_dir, _ = quiet_sweep
    runs = sorted((sweep_dir / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        marks = timings.read_marks(run)
        assert list(marks) == list(timings.MARKS), run  # every mark, each once, in the order a trial passes them
        times = [marks[event]["time"] for event in timings.MARKS]
        assert times == sorted(times)
        assert marks[timings.TRAINING_DONE]["saving_seconds"] > 0  # the micro sweep saves checkpoints
    phases = sweep_overhead.sweep_phases(sweep_dir)["trials"]
    for seconds in phases.values():  # Tune's start and end from the trial log, around the run's own marks
        assert seconds["Ray Train worker start"] > 0 and seconds["final report and teardown"] > 0 and seconds["total"] > seconds["training (checkpoints and reports included)"]


def test_mlflow_and_wandb_get_a_run_per_trial_with_its_lambda_and_metrics(quiet_sweep):
    import mlflow

    sweep_dir, _ = quiet_sweep
    table = pd.read_csv(sweep_dir / "results.csv", dtype={"trial_id": str})  # an id such as 84e12345 would read as a float
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{sweep_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quiet")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    for run in runs:
        weights = [float(run.data.params[f"lambda/{d}"]) for d in DIMENSIONS]
        assert np.isclose(sum(weights), 1.0)
        assert any(np.allclose(weights, r[LAMBDA_COLUMNS].to_numpy(float)) and np.isclose(run.data.metrics[OBJECTIVE], r[OBJECTIVE]) for _, r in table.iterrows())
        assert "top1_accuracy/mixed" in run.data.metrics and "train/loss" in run.data.metrics
    offline = list((sweep_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(list(run.glob("*.wandb")) for run in offline)


def test_asha_stops_the_bad_trial_early_and_the_searcher_keeps_it_apart(ray_cluster, tmp_path):
    """Trials one at a time: the centroid thrice (the same run each time, so never below itself)
    and, third, a λ that trails the centroid at the first rung (truthfulness alone: 0.378 against
    0.405 at step 10 on these micro runs)."""
    points = "[[0.25,0.25,0.25,0.25],[0.25,0.25,0.25,0.25],[0,0,0,1],[0.25,0.25,0.25,0.25]]"
    overrides = micro_overrides(tmp_path, "asha", "searcher.num_trials=4", "searcher.max_concurrent=1", f"searcher.initial_points={points}",
                                "train.eval.every=10", "tune.trial_scheduler=asha", "tune.grace_period=10")
    config = load_sweep_config(SWEEP, overrides)
    table = results_table(config, run_sweep(config))
    assert table["status"].tolist() == ["TERMINATED", "TERMINATED", "STOPPED", "TERMINATED"], table
    stopped_id = table["trial_id"][2]
    assert logged_steps(config.sweep_dir() / "runs" / stopped_id)[-1] < 30  # it trained less
    state = searcher_state(config.sweep_dir())
    assert [(s["trial_id"], s["lambda"], s["step"]) for s in state["stopped"]] == [(stopped_id, [0, 0, 0, 1], 10)]
    assert len(state["observations"]) == 3 and stopped_id not in {o["trial_id"] for o in state["observations"]}
    finished = [o["trial_id"] for o in state["observations"]]
    assert all(sorted(state["curves"][trial_id], key=int) == ["10", "20"] for trial_id in finished)  # the final one comes with the completion
    # fitted at its step-10 score plus the finished trials' median gain from step 10 to the end
    gain = np.median([o["score"] - state["curves"][o["trial_id"]]["10"] for o in state["observations"]])
    searcher = build_searcher(config)
    searcher.set_state(state)
    lambdas, scores = searcher.observed()
    assert len(scores) == 4 and np.allclose(lambdas[3], [0, 0, 0, 1]) and scores[3] == pytest.approx(state["stopped"][0]["score"] + gain)
