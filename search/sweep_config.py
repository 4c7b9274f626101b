"""The λ sweep's config: what a sweep YAML holds, loading it, and the ``--dry-run`` checks.

A sweep config names a base fine-tune (``train_config``; keys under ``train:`` override it), the
objective, the searcher and its λ scheduler settings, and what each trial asks of the cluster. The
Ray orchestration that runs it is :mod:`search.sweep`; its results are read by :mod:`search.analysis`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, List, Optional

import numpy as np

from lambda_dpo.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Interval, check_settings, setting
from lambda_dpo.benchmarks import PREFIX as BENCHMARK_PREFIX
from lambda_dpo.config import ConfigError, load_config, with_absolute_paths
from lambda_dpo.lambdas import centred_dirichlet, fixed_at, validate_lambda, validate_lambdas
from lambda_dpo.train_config import TrainConfig
from search.lambda_scheduler import LambdaSchedulerSettings
from search.observations import read_observations
from search.searcher import DEFAULT_DESIGN, DESIGNS, GridLambdaSearcher, PolynomialLambdaSearcher, RandomLambdaSearcher, lambda_config, optuna_searcher

SEARCHERS = ("polynomial", "optuna", "random", "grid")
TRIAL_SCHEDULERS = ("fifo", "asha")
TRACKERS = ("mlflow", "wandb")
LAMBDA_MODES = ("fixed", "dirichlet")
CONFIG_FILE = "sweep.yaml"
RESULTS_FILE = "results.csv"
OBJECTIVE = "objective"
TUNE_EXPERIMENT = "tune"  # Tune's experiment name under ray_storage()


@dataclass
class SearcherConfig:
    """Which searcher proposes λ, and its budget."""

    name: str = setting("polynomial", help='polynomial (ours) | optuna | random (Dirichlet) | grid', choices=SEARCHERS)
    num_trials: int = setting(8, within=AT_LEAST_ONE, help='fine-tunes (λ) in all')
    max_concurrent: int = setting(2, within=AT_LEAST_ONE, help='trials at a time')
    design: str = setting(DEFAULT_DESIGN, help="polynomial: the first λ, before there is anything to fit: axial (the centroid and the m points halfway to each vertex) | vertices (the m one-hot λ and the centroid: the paper's)", choices=DESIGNS)
    initial_points: Optional[List[List[float]]] = setting(None, help='λ rows run first instead of the design')
    tolerance: float = setting(0.02, within=NON_NEGATIVE, help='no λ within this max-norm distance of a taken one is suggested again')
    seed: int = setting(0, help="seed of the searcher (and of schedule.json's candidates)")
    dirichlet_alpha: float = setting(1.0, within=POSITIVE, help='random')
    grid_resolution: int = setting(2, within=AT_LEAST_ONE, help='grid: steps per side of the simplex lattice')
    optuna_sampler: str = setting("tpe", help='optuna: tpe | gp')
    warm_start: Optional[str] = setting(None, path=True, help="an earlier sweep's results.csv (or a `schedule fit --observations` CSV with an objective column): its rows are observations from the start and their λ are not run again (polynomial, random, grid)")

    def __post_init__(self) -> None:
        check_settings(self, "searcher")
        if self.warm_start and self.name == "optuna":
            raise ValueError("searcher.warm_start works with the polynomial, random and grid searchers; Ray's OptunaSearch cannot take evaluated points with the λ space it uses")


@dataclass
class TuneSettings:
    """Ray Tune's trial scheduler: whether a trial that trails its peers is stopped early."""

    trial_scheduler: str = setting("fifo", help="fifo: every trial runs to the end | asha: Ray's ASHAScheduler stops a trial whose held-out objective trails at a rung (needs train.eval.every)", choices=TRIAL_SCHEDULERS)
    grace_period: int = setting(100, within=AT_LEAST_ONE, help="asha: training steps before a trial can be stopped (the first rung)")
    reduction_factor: float = setting(2.0, within=Interval(1, None, "neither"), help="asha: at each rung, a trial below the best 1/η of those that reached it stops")

    def __post_init__(self) -> None:
        check_settings(self, "tune")


@dataclass
class ResourcesConfig:
    """What one trial asks of the cluster. On 2 CPUs, 2 trials at a time need a fractional
    driver and workers of 0.9 CPU (whole CPUs each would wait forever)."""

    num_workers: int = setting(1, within=AT_LEAST_ONE, help='data-parallel Ray Train workers per trial')
    use_gpu: bool = setting(False, help='one GPU (or gpus_per_worker) per worker')
    cpus_per_worker: float = setting(0.9, within=NON_NEGATIVE, help='CPUs per Ray Train worker')
    gpus_per_worker: float = setting(1.0, within=NON_NEGATIVE, help='with use_gpu; a fraction packs several trials onto one GPU')
    driver_cpus: float = setting(0.1, within=POSITIVE, help='the Tune trial that drives the Train run')

    def __post_init__(self) -> None:
        check_settings(self, "resources")  # Ray rejects a driver of 0 CPUs
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

    # "scheduler" meant the λ scheduler until it was renamed: one word, one meaning (Tune's trial
    # scheduler and the learning-rate schedule are the others).
    RENAMED_KEYS: ClassVar[dict] = {"scheduler": "lambda_scheduler"}

    name: str = setting("sweep", help="the sweep's directory name under storage_path")
    storage_path: str = setting("runs/sweeps", help='Ray storage: a local/NFS path or a URI (s3://, gs://)')
    output_dir: Optional[str] = setting(None, help='results and run dirs; default <storage_path>/<name> when local')
    train_config: Optional[str] = setting(None, help='YAML of the base fine-tune; `train.*` keys override it')
    train: TrainConfig = setting(default_factory=TrainConfig, help='')
    objective: str = setting("top1_accuracy/mixed", help='final evaluation metric the searcher optimises')
    mode: str = setting("max", help='max or min the objective', choices=("min", "max"))
    lambda_mode: str = setting("fixed", help="fixed: the trial's λ for every example | dirichlet: λ ~ Dir centred on it", choices=LAMBDA_MODES)
    lambda_concentration: float = setting(20.0, within=POSITIVE, help='dirichlet: α = concentration · λ')
    searcher: SearcherConfig = setting(default_factory=SearcherConfig, help='')
    tune: TuneSettings = setting(default_factory=TuneSettings, help='')
    lambda_scheduler: LambdaSchedulerSettings = setting(default_factory=LambdaSchedulerSettings, help='')
    resources: ResourcesConfig = setting(default_factory=ResourcesConfig, help='')
    max_failures: int = setting(2, within=NON_NEGATIVE, help='worker-group failures a trial survives, resuming from its checkpoint')
    keep_checkpoints: int = setting(2, within=AT_LEAST_ONE, help='Ray Train checkpoints kept per trial')
    tracking: List[str] = setting(default_factory=list, help="experiment trackers every trial logs to through Ray Tune's callbacks: mlflow (MLFLOW_TRACKING_URI, default sqlite:///<sweep>/mlflow.db) and/or wandb (WANDB_PROJECT, default the sweep's name; WANDB_MODE=offline works without an account)")
    table_metrics: List[str] = setting(default_factory=lambda: ["reward_margin", "logratio/mean"], help='final metrics shown beside the objective in results.csv and the table')

    def __post_init__(self) -> None:
        check_settings(self)
        if self.train.optim.batch_size % self.resources.num_workers:
            raise ValueError(f"train.optim.batch_size {self.train.optim.batch_size} is not divisible by resources.num_workers {self.resources.num_workers}")
        if self.objective.startswith(BENCHMARK_PREFIX) and self.objective not in self.train.benchmarks.metric_names():
            offered = ", ".join(self.train.benchmarks.metric_names()) or "none: train.benchmarks.tasks is empty (e.g. train.benchmarks_config=configs/eval/paper.yaml)"
            raise ValueError(f"objective {self.objective} is not a benchmark metric the trials report; they report {offered}")
        if self.objective.startswith(("verifiable/", "generation/")) and not self.train.eval.generate:
            raise ValueError(f"objective {self.objective} is scored by generation, which the trials do not run: set train.eval.generate=true")
        unknown = [name for name in self.tracking if name not in TRACKERS]
        if unknown or len(set(self.tracking)) != len(self.tracking):
            raise ValueError(f"tracking must list each of {', '.join(TRACKERS)} at most once; got {self.tracking}")
        if self.tune.trial_scheduler == "asha":
            self.check_early_stopping()
        m = len(self.train.data.dimensions)
        for k, point in enumerate(self.searcher.initial_points or []):
            validate_lambda(point, m, name=f"searcher.initial_points[{k}]")

    def check_early_stopping(self) -> None:
        """ASHA compares trials on held-out evaluations during training: they must exist and
        report the objective, and the number of steps must be known before the data is loaded."""
        if not self.train.eval.every:
            raise ValueError("tune.trial_scheduler asha compares trials at their held-out evaluations during training: set train.eval.every (e.g. 50)")
        if self.objective.startswith(("verifiable/", "generation/", BENCHMARK_PREFIX)):
            raise ValueError(f"tune.trial_scheduler asha needs an objective the evaluations during training report (a ranking metric such as top1_accuracy/mixed); {self.objective} is scored only at the end")
        if self.train.optim.epochs is not None:
            raise ValueError("tune.trial_scheduler asha needs train.optim.max_steps, not train.optim.epochs (its last rung is max_steps)")
        if self.tune.grace_period >= self.train.optim.max_steps:
            raise ValueError(f"tune.grace_period {self.tune.grace_period} is not below train.optim.max_steps {self.train.optim.max_steps}: no trial could be stopped")

    @property
    def final_step(self) -> Optional[int]:
        """With early stopping, the step of a finished trial's final evaluation: a trial that ends
        with an earlier one was stopped (the searcher and the console both tell them apart by it)."""
        return self.train.optim.max_steps if self.tune.trial_scheduler == "asha" else None

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

    def tune_path(self) -> str:
        """Tune's experiment (with the searcher state): what ``--resume`` restores."""
        return f"{self.ray_storage()}/{TUNE_EXPERIMENT}"


def load_sweep_config(path: str | Path | None, overrides=()) -> SweepConfig:
    return load_config(SweepConfig, path, overrides, base_files={"train": "train_config", "train.benchmarks": "train.benchmarks_config"})


def read_sweep_config(sweep_dir: str | Path, overrides=()) -> SweepConfig:
    path = Path(sweep_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{sweep_dir} is not a sweep directory (no {CONFIG_FILE})")
    return load_sweep_config(path, overrides)


def build_searcher(config: SweepConfig):
    """The Tune searcher the config names, metric ``objective`` and mode set here, with the
    ``warm_start`` rows already observed."""
    s = config.searcher
    common = dict(metric=OBJECTIVE, mode=config.mode, num_trials=s.num_trials, initial_points=s.initial_points, tolerance=s.tolerance, final_step=config.final_step, random_state=s.seed)
    if s.name == "optuna":
        return optuna_searcher(config.dimensions, metric=OBJECTIVE, mode=config.mode, sampler=s.optuna_sampler, seed=s.seed, initial_points=s.initial_points)
    if s.name == "polynomial":
        searcher = PolynomialLambdaSearcher(config.dimensions, lambda_scheduler=config.lambda_scheduler.build(), design=s.design, **common)
    elif s.name == "random":
        searcher = RandomLambdaSearcher(config.dimensions, dirichlet_alpha=s.dirichlet_alpha, **common)
    else:
        searcher = GridLambdaSearcher(config.dimensions, resolution=s.grid_resolution, **common)
    for weights, score in zip(*warm_start_rows(config)):
        searcher.add_evaluated_point(lambda_config(weights, config.dimensions), score)
    return searcher


def warm_start_rows(config: SweepConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(λ [n, m], objective [n])`` of ``searcher.warm_start`` (none without it); rows without a
    finite objective (errored or unfinished trials) are left out quietly: the file is read for the
    searcher, the dry-run and the results table, and the sweep says once how many rows it took."""
    if not config.searcher.warm_start:
        return np.zeros((0, len(config.dimensions))), np.zeros(0)
    path = config.searcher.warm_start
    _, lambdas, scores = read_observations(path, OBJECTIVE, config.dimensions, announce=False)
    return validate_lambdas(lambdas, len(config.dimensions), name=f"searcher.warm_start {path}: λ rows"), scores


def check_sweep_config(config: SweepConfig) -> list[str]:
    """``--dry-run``: the base fine-tune's checks, the searcher built, the resources described."""
    from lambda_dpo.preflight import check_train_config

    lines = check_train_config(config.train)
    searcher = build_searcher(config)
    lines.append(f"searcher: {type(searcher).__name__}, {config.searcher.num_trials} trials, {config.searcher.max_concurrent} at a time, {config.mode} {config.objective}")
    if config.searcher.warm_start:
        lambdas, scores = warm_start_rows(config)
        lines.append(f"warm start: {len(scores)} observations from {config.searcher.warm_start}" + (f", best {config.objective} {scores.max() if config.mode == 'max' else scores.min():.4g}" if len(scores) else ""))
    r = config.resources
    per_trial = f"{r.num_workers} worker(s) × {r.per_worker()} + driver {r.driver_cpus} CPU"
    concurrent = {k: round(v * r.num_workers * config.searcher.max_concurrent, 3) for k, v in r.per_worker().items()}
    lines.append(f"resources: {per_trial} per trial; {config.searcher.max_concurrent} trials at once need {concurrent} + {r.driver_cpus * config.searcher.max_concurrent:g} CPU")
    lines.append(f"storage: {config.ray_storage()} ({'remote' if config.remote_storage else 'local or shared filesystem'}); results in {config.sweep_dir()}")
    return lines


def trial_train_config(config: SweepConfig, weights: np.ndarray, trial_id: str) -> TrainConfig:
    """The base fine-tune with this trial's λ and its own run directory."""
    if config.lambda_mode == "fixed":
        lambdas = fixed_at(config.train.lambdas, weights)
    else:
        lambdas = centred_dirichlet(config.train.lambdas, weights, config.lambda_concentration)
    run_dir = config.sweep_dir() / "runs" / trial_id
    # The trials differ in λ only, which the reference never sees: one cache serves them all.
    reference_cache = config.train.reference_cache or str(config.sweep_dir() / "reference_logps")
    return dataclasses.replace(config.train, lambdas=lambdas, output_dir=str(run_dir), reference_cache=reference_cache)


def for_trials(config: SweepConfig) -> SweepConfig:
    """The config as trials see it: every local path absolute, resolved here in the driver's
    directory (Tune runs each trial in a directory of its own)."""
    storage = config.storage_path if config.remote_storage else str(Path(config.storage_path).absolute())
    return dataclasses.replace(config, train=with_absolute_paths(config.train), output_dir=str(config.sweep_dir()), storage_path=storage)
