"""The λ sweep: a Ray Tune search over λ whose trials are Ray Train λ-DPO fine-tunes.

Ray 2.60 pattern (Train V2): each Tune trial runs :func:`run_trial`, a function trainable that
builds a ``TorchTrainer`` over :func:`train_worker` (the training loop of ``lambda_dpo.train``)
and fits it; ``TuneReportCallback`` forwards the workers' reports to Tune, where the searcher
reads ``objective``. The Train run is named after the trial, so a retried worker group — or a
trial restarted by ``Tuner.restore`` — resumes from the trial's last checkpoint.

Sweep directory (``<storage_path>/<name>``, or ``output_dir``)::

    sweep.yaml          the resolved sweep config (its ``train`` node is the base fine-tune)
    tune/               the Tune experiment (searcher state included): what ``--resume`` reads
    train/<trial>/      Ray Train's copy of each trial's checkpoints
    runs/<trial>/       each trial's run directory (config, metrics.jsonl, checkpoints, eval.json)
    results.csv         one row per trial: λ, objective, status, key metrics
    schedule.json       the scheduler fitted on every finished trial (the `scheduled` sampler reads it)
    objective.png       objective by trial with the best so far; schedule.png: the fitted landscape
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd

from lambda_dpo.benchmarks import PREFIX as BENCHMARK_PREFIX
from lambda_dpo.config import ConfigError, load_config, save_config
from lambda_dpo.lambdas import validate_lambda
from lambda_dpo.train import TRAINING_STATE, TrainConfig, latest_checkpoint, train
from search.scheduler import PolynomialScheduler, SchedulerSettings
from search.searcher import (
    LAMBDA_KEY,
    GridLambdaSearcher,
    PolynomialLambdaSearcher,
    RandomLambdaSearcher,
    optuna_searcher,
    trial_lambda,
)

SEARCHERS = ("polynomial", "optuna", "random", "grid")
LAMBDA_MODES = ("fixed", "dirichlet")
CONFIG_FILE = "sweep.yaml"
RESULTS_FILE = "results.csv"
OBJECTIVE = "objective"


@dataclass
class SearcherConfig:
    """Which searcher proposes λ, and its budget."""

    name: str = "polynomial"  # polynomial (ours) | optuna | random (Dirichlet) | grid
    num_trials: int = 8
    max_concurrent: int = 2
    initial_points: Optional[List[List[float]]] = None  # default: the m vertices and the centroid (polynomial)
    tolerance: float = 0.02  # no λ within this max-norm distance of a taken one is suggested again
    seed: int = 0
    dirichlet_alpha: float = 1.0  # random
    grid_resolution: int = 2  # grid: steps per side of the simplex lattice
    optuna_sampler: str = "tpe"  # optuna: tpe | gp

    def __post_init__(self) -> None:
        if self.name not in SEARCHERS:
            raise ValueError(f"searcher.name must be one of {', '.join(SEARCHERS)}; got {self.name!r}")
        if self.num_trials <= 0 or self.max_concurrent <= 0:
            raise ValueError("searcher.num_trials and searcher.max_concurrent must be positive")


@dataclass
class ResourcesConfig:
    """What one trial asks of the cluster. On 2 CPUs, 2 trials at a time need a fractional
    driver and workers of 0.9 CPU (whole CPUs each would wait forever)."""

    num_workers: int = 1  # data-parallel Ray Train workers per trial
    use_gpu: bool = False
    cpus_per_worker: float = 0.9
    gpus_per_worker: float = 1.0  # with use_gpu; a fraction packs several trials onto one GPU
    driver_cpus: float = 0.1  # the Tune trial that drives the Train run

    def __post_init__(self) -> None:
        if self.num_workers <= 0 or self.cpus_per_worker < 0 or self.driver_cpus <= 0:
            raise ValueError("resources.num_workers must be positive, cpus_per_worker ≥ 0 and driver_cpus > 0 (Ray rejects 0)")
        if self.use_gpu and not 0 < self.gpus_per_worker:
            raise ValueError(f"resources.gpus_per_worker must be > 0 with use_gpu, got {self.gpus_per_worker}")
        if self.gpus_per_worker > 1 and self.gpus_per_worker != int(self.gpus_per_worker):
            raise ValueError(f"resources.gpus_per_worker above 1 must be a whole number (Ray's rule), got {self.gpus_per_worker}")

    def per_worker(self) -> dict:
        resources = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            resources["GPU"] = self.gpus_per_worker
        return resources


@dataclass
class SweepConfig:
    """A λ sweep: the base fine-tune, the objective, the searcher and the resources."""

    name: str = "sweep"
    storage_path: str = "runs/sweeps"  # Ray storage: a local/NFS path or a URI (s3://, gs://)
    output_dir: Optional[str] = None  # results and run dirs; default <storage_path>/<name> when local
    train_config: Optional[str] = None  # YAML of the base fine-tune; `train.*` keys override it
    train: TrainConfig = field(default_factory=TrainConfig)
    objective: str = "top1_accuracy/mixed"  # final evaluation metric the searcher optimises
    mode: str = "max"
    lambda_mode: str = "fixed"  # fixed: the trial's λ for every example | dirichlet: λ ~ Dir centred on it
    lambda_concentration: float = 20.0  # dirichlet: α = concentration · λ
    searcher: SearcherConfig = field(default_factory=SearcherConfig)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    max_failures: int = 2  # worker-group failures a trial survives, resuming from its checkpoint
    keep_checkpoints: int = 2  # Ray Train checkpoints kept per trial
    table_metrics: List[str] = field(default_factory=lambda: ["reward_margin", "kl_to_reference"])

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max, got {self.mode!r}")
        if self.lambda_mode not in LAMBDA_MODES:
            raise ValueError(f"lambda_mode must be one of {', '.join(LAMBDA_MODES)}; got {self.lambda_mode!r}")
        if self.lambda_concentration <= 0:
            raise ValueError(f"lambda_concentration must be > 0, got {self.lambda_concentration}")
        if self.max_failures < 0 or self.keep_checkpoints < 1:
            raise ValueError("max_failures must be ≥ 0 and keep_checkpoints ≥ 1")
        if self.train.optim.batch_size % self.resources.num_workers:
            raise ValueError(f"train.optim.batch_size {self.train.optim.batch_size} is not divisible by resources.num_workers {self.resources.num_workers}")
        if self.objective.startswith(BENCHMARK_PREFIX) and self.objective not in self.train.benchmarks.metric_names():
            offered = ", ".join(self.train.benchmarks.metric_names()) or "none: train.benchmarks.tasks is empty (e.g. train.benchmarks_config=configs/eval/paper.yaml)"
            raise ValueError(f"objective {self.objective} is not a benchmark metric the trials report; they report {offered}")
        if self.objective.startswith(("verifiable/", "generation/")) and not self.train.eval.generate:
            raise ValueError(f"objective {self.objective} is scored by generation, which the trials do not run: set train.eval.generate=true")
        m = len(self.train.data.dimensions)
        for k, point in enumerate(self.searcher.initial_points or []):
            validate_lambda(point, m, name=f"searcher.initial_points[{k}]")

    @property
    def dimensions(self) -> list[str]:
        return list(self.train.data.dimensions)

    @property
    def remote_storage(self) -> bool:
        return "://" in self.storage_path

    def sweep_dir(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir).absolute()
        if self.remote_storage:
            return Path("runs/sweeps", self.name).absolute()
        return Path(self.storage_path, self.name).absolute()

    def ray_storage(self) -> str:
        """Where Tune and Train persist (absolute for a local path, as Ray wants)."""
        if self.remote_storage:
            return f"{self.storage_path.rstrip('/')}/{self.name}"
        return str(Path(self.storage_path, self.name).absolute())


def load_sweep_config(path: str | Path | None, overrides=()) -> SweepConfig:
    return load_config(SweepConfig, path, overrides, base_files={"train": "train_config", "train.benchmarks": "train.benchmarks_config"})


# ----------------------------------------------------------------------------- searchers


def build_searcher(config: SweepConfig):
    """The Tune searcher the config names, metric ``objective`` and mode set here."""
    s = config.searcher
    common = dict(metric=OBJECTIVE, mode=config.mode, num_trials=s.num_trials, initial_points=s.initial_points, tolerance=s.tolerance, random_state=s.seed)
    if s.name == "polynomial":
        return PolynomialLambdaSearcher(config.dimensions, scheduler=config.scheduler.build(), **common)
    if s.name == "random":
        return RandomLambdaSearcher(config.dimensions, dirichlet_alpha=s.dirichlet_alpha, **common)
    if s.name == "grid":
        return GridLambdaSearcher(config.dimensions, resolution=s.grid_resolution, **common)
    return optuna_searcher(config.dimensions, metric=OBJECTIVE, mode=config.mode, sampler=s.optuna_sampler, seed=s.seed, initial_points=s.initial_points)


def check_sweep_config(config: SweepConfig) -> list[str]:
    """``--dry-run``: the base fine-tune's checks, the searcher built, the resources described."""
    from lambda_dpo.preflight import check_train_config

    lines = check_train_config(config.train)
    searcher = build_searcher(config)
    lines.append(f"searcher: {type(searcher).__name__}, {config.searcher.num_trials} trials, {config.searcher.max_concurrent} at a time, {config.mode} {config.objective}")
    r = config.resources
    per_trial = f"{r.num_workers} worker(s) × {r.per_worker()} + driver {r.driver_cpus} CPU"
    concurrent = {k: round(v * r.num_workers * config.searcher.max_concurrent, 3) for k, v in r.per_worker().items()}
    lines.append(f"resources: {per_trial} per trial; {config.searcher.max_concurrent} trials at once need {concurrent} + {r.driver_cpus * config.searcher.max_concurrent:g} CPU")
    lines.append(f"storage: {config.ray_storage()} ({'remote' if config.remote_storage else 'local or shared filesystem'}); results in {config.sweep_dir()}")
    return lines


# ----------------------------------------------------------------------------- one trial


def with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """Local paths made absolute: Ray's trial and worker processes run in their own directories.
    Hub ids and ``synthetic:`` sources are left alone (they name no local file)."""

    def absolute(value: str | None) -> str | None:
        return str(Path(value).absolute()) if value and Path(value).exists() else value

    model = dataclasses.replace(config.model, name_or_path=absolute(config.model.name_or_path), tokenizer=absolute(config.model.tokenizer))
    data = dataclasses.replace(config.data, source=absolute(config.data.source))
    evaluation = dataclasses.replace(config.eval, source=absolute(config.eval.source))
    lambdas = dataclasses.replace(config.lambdas, schedule=absolute(config.lambdas.schedule))
    benchmarks = dataclasses.replace(config.benchmarks, include_paths=[absolute(path) for path in config.benchmarks.include_paths])
    return dataclasses.replace(config, model=model, data=data, eval=evaluation, lambdas=lambdas, benchmarks=benchmarks)


def trial_train_config(config: SweepConfig, weights: np.ndarray, trial_id: str) -> TrainConfig:
    """The base fine-tune with this trial's λ and its own run directory."""
    weights = [float(w) for w in weights]
    if config.lambda_mode == "fixed":
        lambdas = dataclasses.replace(config.train.lambdas, sampler="fixed", weights=weights)
    else:
        alpha = config.lambda_concentration / len(weights)  # α = concentration · λ (see LambdaConfig)
        lambdas = dataclasses.replace(config.train.lambdas, sampler="dirichlet", weights=weights, dirichlet_alpha=alpha)
    run_dir = config.sweep_dir() / "runs" / trial_id
    return dataclasses.replace(config.train, lambdas=lambdas, output_dir=str(run_dir))


class RayTrainReporter:
    """Plugs the training loop's reports into Ray Train (collective: every worker calls it).

    Every report carries ``objective``: the latest value of the configured metric (NaN before
    the first evaluation), so Tune's strict metric check passes and the searcher reads the
    final evaluation's value at the end. Rank 0's checkpoints go to Ray's storage.
    """

    def __init__(self, objective: str):
        self.objective = objective
        self.latest = float("nan")
        self.reported = False

    def report(self, metrics, *, step, checkpoint=None):
        import ray.train

        value = metrics.get(self.objective, metrics.get(f"eval/{self.objective}"))
        if value is not None:
            self.latest = float(value)
        payload = {**metrics, "step": step, OBJECTIVE: self.latest}
        ray_checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        ray.train.report(payload, checkpoint=ray_checkpoint, checkpoint_dir_name=f"step-{step}")
        self.reported = True

    def close(self):
        pass


def step_of(name: str) -> int:
    """N of a ``step-N`` checkpoint name, -1 for any other name."""
    prefix, _, number = name.rpartition("-")
    return int(number) if prefix == "step" and number.isdigit() else -1


def resume_point(ray_checkpoint_path: str | None, ray_copy: str | Path | None, run_dir: Path) -> Path | None:
    """The newer of Ray's checkpoint (stored as ``…/step-N``, read from ``ray_copy``, which may be
    a download directory of any name) and the run directory's own latest complete checkpoint."""
    found = []
    if ray_copy is not None and (Path(ray_copy) / TRAINING_STATE).exists():
        found.append((step_of(Path(ray_checkpoint_path).name), Path(ray_copy)))
    local = latest_checkpoint(run_dir)
    if local is not None:
        found.append((step_of(local.name), local))
    return max(found, key=lambda pair: pair[0])[1] if found else None


def train_worker(loop_config: dict) -> None:
    """One Ray Train worker: the λ-DPO loop, resumed from the newest checkpoint there is (Ray's
    copy, or the run directory's own when the worker died before Ray had it)."""
    import ray.train
    import ray.train.torch
    from transformers.utils import logging as hf_logging

    from lambda_dpo.reporting import JsonlReporter, Reporters

    hf_logging.disable_progress_bar()  # one bar per saved shard would flood the sweep's log
    config: TrainConfig = loop_config["train"]
    run_dir = Path(config.output_dir)
    ray_reporter = RayTrainReporter(loop_config["objective"])
    reporters = [ray_reporter]
    if ray.train.get_context().get_world_rank() == 0:  # the local log first: a Ray upload may be cut short
        reporters.insert(0, JsonlReporter(run_dir / "metrics.jsonl"))
    reporter = Reporters(reporters)
    saved = ray.train.get_checkpoint()
    with saved.as_directory() if saved else contextlib.nullcontext(None) as ray_copy:
        resume_from = resume_point(saved.path if saved else None, ray_copy, run_dir)
        try:
            result = train(config, reporter=reporter, resume_from=resume_from, device=ray.train.torch.get_device())
            if not ray_reporter.reported:  # restarted after its last step: report the saved result again
                ray_reporter.report(result.metrics, step=config.optim.max_steps)
        finally:
            reporter.close()


def make_trainer(
    train_config: TrainConfig,
    *,
    name: str,
    storage_path: str,
    resources: ResourcesConfig,
    objective: str = "top1_accuracy/mixed",
    max_failures: int = 2,
    keep_checkpoints: int = 2,
    callbacks=(),
):
    """A Ray Train ``TorchTrainer`` running one λ-DPO fine-tune on ``resources.num_workers``
    data-parallel workers (gloo on CPU, NCCL on GPU). Naming it the same again resumes it."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(
        train_worker,
        train_loop_config={"train": train_config, "objective": objective},
        scaling_config=ScalingConfig(num_workers=resources.num_workers, use_gpu=resources.use_gpu, resources_per_worker=resources.per_worker()),
        torch_config=TorchConfig(backend="nccl" if resources.use_gpu else "gloo"),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints),
            failure_config=FailureConfig(max_failures=max_failures),
            callbacks=list(callbacks),
        ),
    )


def run_trial(trial_config: dict, sweep: SweepConfig) -> None:
    """The Tune function trainable: one Ray Train fine-tune at the trial's λ."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    weights = trial_lambda(trial_config, sweep.dimensions)
    make_trainer(
        trial_train_config(sweep, weights, trial_id),
        name=trial_id,
        storage_path=f"{sweep.ray_storage()}/train",
        resources=sweep.resources,
        objective=sweep.objective,
        max_failures=sweep.max_failures,
        keep_checkpoints=sweep.keep_checkpoints,
        callbacks=[TuneReportCallback()],
    ).fit()


# ----------------------------------------------------------------------------- the sweep


def connect_ray(**kwargs) -> None:
    """Join the cluster in ``RAY_ADDRESS`` (``ray job submit`` sets it), else start a private
    local one; never a bare ``ray.init()`` that could attach to someone else's cluster."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(address="local", include_dashboard=False, **kwargs)


def for_trials(config: SweepConfig) -> SweepConfig:
    """The config as trials see it: every local path absolute, resolved here in the driver's
    directory (Tune runs each trial in a directory of its own)."""
    storage = config.storage_path if config.remote_storage else str(Path(config.storage_path).absolute())
    return dataclasses.replace(config, train=with_absolute_paths(config.train), output_dir=str(config.sweep_dir()), storage_path=storage)


def trainable(config: SweepConfig):
    """The trial function with the sweep config bound and the driver's fractional CPU."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(run_trial, sweep=for_trials(config)), {"cpu": config.resources.driver_cpus})


def trial_dirname(trial) -> str:
    """``trial-003-<id>``: Tune's creation counter first, so directories sort in trial order."""
    counter = trial.experiment_tag.split("_", 1)[0]
    return f"trial-{int(counter):03d}-{trial.trial_id}" if counter.isdigit() else trial.trial_id


def run_sweep(config: SweepConfig, *, resume: bool = False):
    """Run (or, with ``resume``, continue) the sweep; returns Tune's ``ResultGrid``."""
    from ray import tune

    sweep_dir = config.sweep_dir()
    tune_path = f"{config.ray_storage()}/tune"
    # Save the experiment state (searcher included) every few seconds, not Tune's ≥ 10 s, so a
    # driver killed just after a trial finished does not leave that trial to be run again.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    connect_ray()
    if resume:
        tuner = tune.Tuner.restore(tune_path, trainable=trainable(config), resume_unfinished=True, resume_errored=False, restart_errored=False)
    else:
        if (sweep_dir / RESULTS_FILE).exists() or tune.Tuner.can_restore(tune_path):
            raise FileExistsError(f"{sweep_dir} already holds a sweep; continue it with --resume {sweep_dir} or choose another name")
        save_config(config, sweep_dir, CONFIG_FILE)
        tuner = tune.Tuner(
            trainable(config),
            param_space={},
            tune_config=tune.TuneConfig(
                search_alg=build_searcher(config),
                num_samples=config.searcher.num_trials,
                max_concurrent_trials=config.searcher.max_concurrent,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(name="tune", storage_path=config.ray_storage(), failure_config=tune.FailureConfig(max_failures=0), verbose=1),
        )
    return tuner.fit()


def results_table(config: SweepConfig, results) -> pd.DataFrame:
    """One row per trial in creation order: id, status, λ, objective, table metrics, step."""
    rows = []
    for result in sorted(results, key=lambda r: Path(r.path).name):
        trial_config = result.config or {}
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or Path(result.path).name.rsplit("-", 1)[-1]
        row = {"trial_id": trial_id, "status": "ERROR" if result.error else "TERMINATED"}
        weights = trial_config.get(LAMBDA_KEY, {})
        row |= {f"lambda/{d}": weights.get(d, float("nan")) for d in config.dimensions}
        row[OBJECTIVE] = metrics.get(OBJECTIVE, float("nan")) if not result.error else float("nan")
        row |= {name: metrics.get(name, float("nan")) for name in config.table_metrics}
        row["step"] = metrics.get("step", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def fitted_schedule(config: SweepConfig, table: pd.DataFrame) -> PolynomialScheduler | None:
    finished = table[np.isfinite(table[OBJECTIVE].astype(float))]
    if len(finished) < 2:
        return None
    lambdas = finished[[f"lambda/{d}" for d in config.dimensions]].to_numpy(float)
    sign = 1.0 if config.mode == "max" else -1.0
    return config.scheduler.build(dimensions=config.dimensions, random_state=config.searcher.seed).fit(lambdas, sign * finished[OBJECTIVE].to_numpy(float))


def plot_objective(config: SweepConfig, table: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = table[OBJECTIVE].astype(float).to_numpy()
    trials = np.arange(1, len(values) + 1)
    best = (np.fmax.accumulate if config.mode == "max" else np.fmin.accumulate)(np.where(np.isfinite(values), values, np.nan))
    figure, axes = plt.subplots(figsize=(6.5, 4))
    axes.plot(trials, values, "o", label="trial")
    axes.step(trials, best, where="post", label="best so far")
    axes.set_xlabel("trial (in order of creation)")
    axes.set_ylabel(config.objective)
    axes.set_title(f"λ sweep {config.name} ({config.searcher.name} searcher)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_outputs(config: SweepConfig, table: pd.DataFrame) -> dict[str, Path]:
    """results.csv, schedule.json (+ schedule.png) and objective.png in the sweep directory."""
    from search.plots import plot_schedule

    sweep_dir = config.sweep_dir()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    written = {"results": sweep_dir / RESULTS_FILE}
    table.to_csv(written["results"], index=False)
    written["objective_plot"] = plot_objective(config, table, sweep_dir / "objective.png")
    schedule = fitted_schedule(config, table)
    if schedule is not None:
        written["schedule"] = sweep_dir / "schedule.json"
        schedule.to_json(written["schedule"])
        written["schedule_plot"] = plot_schedule(schedule, sweep_dir / "schedule.png")
    return written


def best_trial(config: SweepConfig, table: pd.DataFrame) -> pd.Series | None:
    finished = table[np.isfinite(table[OBJECTIVE].astype(float))]
    if not len(finished):
        return None
    index = finished[OBJECTIVE].astype(float).idxmax() if config.mode == "max" else finished[OBJECTIVE].astype(float).idxmin()
    return finished.loc[index]


def centroid_trial(config: SweepConfig, table: pd.DataFrame) -> pd.Series | None:
    m = len(config.dimensions)
    lambdas = table[[f"lambda/{d}" for d in config.dimensions]].to_numpy(float)
    near = np.abs(lambdas - 1.0 / m).max(axis=1) < 1e-6
    return table[near].iloc[0] if near.any() else None


def read_sweep_config(sweep_dir: str | Path, overrides=()) -> SweepConfig:
    path = Path(sweep_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{sweep_dir} is not a sweep directory (no {CONFIG_FILE})")
    return load_sweep_config(path, overrides)

