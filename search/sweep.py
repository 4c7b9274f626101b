"""The λ sweep on Ray: a Ray Tune search over λ whose trials are Ray Train λ-DPO fine-tunes.

Read top-down: :func:`run_sweep` builds the Tuner over :func:`trainable`; each Tune trial runs
:func:`run_trial`, a function trainable that builds a ``TorchTrainer`` over :func:`train_worker`
(the training loop of ``lambda_dpo.train``) and fits it. ``TuneReportCallback`` forwards the
workers' reports to Tune, where the searcher reads ``objective`` (Ray 2.60's Train V2 pattern).
The Train run is named after the trial, so a retried worker group, or a trial restarted by
``Tuner.restore``, resumes from the trial's last checkpoint.

Sweep directory (``<storage_path>/<name>``, or ``output_dir``)::

    sweep.yaml          the resolved sweep config (its ``train`` node is the base fine-tune)
    tune/               the Tune experiment (searcher state included): what ``--resume`` reads
    train/<trial>/      Ray Train's copy of each trial's checkpoints
    runs/<trial>/       each trial's run directory (config, metrics.jsonl, checkpoints, eval.json)
    reference_logps/    the reference log-probs, computed by the first trial and read by the others
    results.csv, schedule.json, objective.png, schedule.png: written by search.analysis.write_outputs
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from lambda_dpo import timings
from lambda_dpo.config import save_config
from lambda_dpo.checkpoints import TRAINING_STATE, checkpoint_problem, checkpoint_step, latest_checkpoint
from lambda_dpo.console import logger, make_console, output_to_file
from lambda_dpo.train import train
from lambda_dpo.train_config import TrainConfig
from search.searcher import EVALUATED_STEP, trial_lambda
from search.sweep_config import CONFIG_FILE, OBJECTIVE, RESULTS_FILE, TUNE_EXPERIMENT, ResourcesConfig, SweepConfig, build_searcher, for_trials, trial_train_config
from search.trial_log import trial_number


def run_sweep(config: SweepConfig, *, resume: bool = False, verbose: bool = False):
    """Run (or, with ``resume``, continue) the sweep; returns Tune's ``ResultGrid``.

    The console gets a line per trial start and end (:class:`search.trial_log.TrialLog`); Ray's
    and Train's own output goes to ``logs/ray.log`` in the sweep directory, unless ``verbose``.
    """
    from search.trial_log import LOGS, RAY_LOG

    check_sweep_directory(config, resume=resume)
    if verbose:
        return _fit(config, resume, make_console(), tune_verbosity=1)
    with output_to_file(config.sweep_dir() / LOGS / RAY_LOG) as terminal:
        return _fit(config, resume, make_console(terminal), tune_verbosity=0)


def _fit(config: SweepConfig, resume: bool, console, tune_verbosity: int):
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from search.trial_log import TrialLog

    sweep_dir = config.sweep_dir()
    # Save the experiment state (searcher included) every few seconds, not Tune's ≥ 10 s, so a
    # driver killed just after a trial finished does not leave that trial to be run again.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # Tune's own TensorBoard logs would duplicate each trial's (RUN_DIR/tensorboard, written by the
    # training loop) in a temporary directory, and Tune would print that path: its CSV and JSON
    # loggers, which its result analysis reads, are kept below; the TensorBoard one is not added.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    connected = connect_ray()
    TrialLog.console = console  # a class attribute: Tune pickles the callbacks, and a terminal does not pickle
    if resume:  # the run config, callbacks included, is the one the sweep started with
        tuner = tune.Tuner.restore(config.tune_path(), trainable=trainable(config), resume_unfinished=True, resume_errored=False, restart_errored=False)
    else:
        save_config(config, sweep_dir, CONFIG_FILE)
        tuner = tune.Tuner(
            trainable(config),
            param_space={},
            tune_config=tune.TuneConfig(
                search_alg=build_searcher(config),
                scheduler=build_trial_scheduler(config),
                num_samples=config.searcher.num_trials,
                max_concurrent_trials=config.searcher.max_concurrent,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(name=TUNE_EXPERIMENT, storage_path=config.ray_storage(), failure_config=tune.FailureConfig(max_failures=0),
                                      verbose=tune_verbosity, callbacks=[CSVLoggerCallback(), JsonLoggerCallback(), TrialLog(config), *tracking_callbacks(config)]),
        )
    try:
        return tuner.fit()
    finally:
        if connected:  # while the output still goes to the log: Ray's actors keep talking until it ends
            import ray

            ray.shutdown()


def tracking_callbacks(config: SweepConfig) -> list:
    """Ray Tune's own MLflow and wandb logger callbacks for ``tracking``: one run per trial, its
    λ as parameters (``lambda/<dimension>``), every reported metric. Where to log comes from the
    trackers' usual environment variables, with defaults that work on a laptop."""
    callbacks = []
    if "mlflow" in config.tracking:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        # MLflow 3 refuses its old ./mlruns directory store by default: a SQLite file is its local store now.
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{config.sweep_dir() / 'mlflow.db'}"
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=config.name, tags={"lambda-dpo.objective": config.objective}))
    if "wandb" in config.tracking:
        from ray.air.integrations.wandb import WandbLoggerCallback

        # wandb runs in a Ray actor whose environment is the cluster's, not this shell's: Ray passes
        # WANDB_API_KEY on, and the mode is passed here, so WANDB_MODE=offline holds there too.
        mode = {"mode": os.environ["WANDB_MODE"]} if os.environ.get("WANDB_MODE") else {}
        callbacks.append(WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT") or config.name, group=config.name, dir=str(config.sweep_dir()), **mode))
    return callbacks


def build_trial_scheduler(config: SweepConfig):
    """Tune's trial scheduler: FIFO (every trial runs to the end) or ASHA on the held-out
    objective, its clock the step of each trial's latest evaluation."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    settings = config.tune
    if settings.trial_scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr=EVALUATED_STEP, metric=OBJECTIVE, mode=config.mode, max_t=config.train.optim.max_steps,
                         grace_period=settings.grace_period, reduction_factor=settings.reduction_factor)


def check_sweep_directory(config: SweepConfig, *, resume: bool, reach_remote: bool = True) -> str:
    """Before Ray starts (and in ``--dry-run``): a new sweep must not write over an old one, a
    resumed one must have Tune's state to continue from. Returns what was found. Without
    ``reach_remote`` remote storage is not asked (a dry-run stays off the network)."""
    from ray import tune

    sweep_dir, tune_path = config.sweep_dir(), config.tune_path()
    if config.remote_storage and not reach_remote:
        return f"sweep directory: {sweep_dir}; Tune state in {tune_path} (remote: looked up when the sweep starts)"
    restorable = tune.Tuner.can_restore(tune_path)
    if resume:
        if not restorable:
            raise FileNotFoundError(f"{sweep_dir}: no Tune state under {tune_path} to continue from (did the sweep start?)")
        return f"sweep directory: {sweep_dir} (continued from {tune_path})"
    if (sweep_dir / RESULTS_FILE).exists():
        raise FileExistsError(f"{sweep_dir} already holds a sweep; continue it with --resume {sweep_dir} or choose another name")
    if restorable:  # Ray's storage is <storage_path>/<name>, whatever output_dir says
        raise FileExistsError(f"{tune_path} holds the Tune state of another sweep named {config.name!r}; "
                              f"continue that one with --resume, or choose another name or storage_path")
    return f"sweep directory: {sweep_dir} (new)"


def trainable(config: SweepConfig):
    """The trial function with the sweep config bound and the driver's fractional CPU."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(run_trial, sweep=for_trials(config)), {"cpu": config.resources.driver_cpus})


def trial_dirname(trial) -> str:
    """``trial-003-<id>``: Tune's creation counter first, so directories sort in trial order."""
    number = trial_number(trial)
    return f"trial-{int(number):03d}-{trial.trial_id}" if number.isdigit() else trial.trial_id


# How often Ray Train's controller polls its workers (Ray's default: 2 s). A worker's report waits
# for the poll to take the one before it, so each logged step cost a trial up to that long (45 s of
# a demo trial's 110 s at 2 s). Set only for the local cluster a sweep starts itself: on a cluster
# joined through RAY_ADDRESS, a 2-trial sweep with trackers deadlocked in Ray Tune's trial actor (its
# result queue) in 4 of 5 runs with it and in none of 4 without (benchmarks/README.md).
TRAIN_POLL_INTERVAL = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")


def connect_ray(**kwargs) -> bool:
    """Join the cluster in ``RAY_ADDRESS`` (``ray job submit`` sets it), else start a private
    local one; never a bare ``ray.init()`` that could attach to someone else's cluster. Returns
    whether it connected (False: this process already was).

    The local cluster runs its dashboard (on 127.0.0.1): it serves the State API, without which Ray
    Train's PlacementGroupCleaner cannot free the CPUs of a trial whose controller was killed, and
    a sweep whose trials ASHA stops waits forever for CPUs it will never get back."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
    else:
        os.environ.setdefault(*TRAIN_POLL_INTERVAL)  # inherited by the processes of the cluster started here
        ray.init(address="local", include_dashboard=True, **kwargs)
    return True


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


def train_worker(loop_config: dict) -> None:
    """One Ray Train worker: the λ-DPO loop, resumed from the newest checkpoint there is (Ray's
    copy, or the run directory's own when the worker died before Ray had it)."""
    import ray.train
    import ray.train.torch
    from transformers.utils import logging as hf_logging

    from lambda_dpo.reporting import JsonlReporter, Reporters, TensorBoardReporter

    hf_logging.disable_progress_bar()  # one bar per saved shard would flood the sweep's log
    config: TrainConfig = loop_config["train"]
    run_dir = Path(config.output_dir)
    rank_zero = ray.train.get_context().get_world_rank() == 0
    if rank_zero:  # in the worker: Tune's trial process writes nothing (lambda_dpo/timings.py)
        timings.mark(run_dir, timings.WORKER_STARTED)
    ray_reporter = RayTrainReporter(loop_config["objective"])
    reporters = [ray_reporter]
    if rank_zero:  # the local logs first: a Ray upload may be cut short
        reporters[:0] = [JsonlReporter(run_dir / "metrics.jsonl"), TensorBoardReporter(run_dir / "tensorboard")]
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


class RayTrainReporter:
    """Plugs the training loop's reports into Ray Train (collective: every worker calls it).

    Every report carries ``objective``: the latest value of the configured metric (NaN before
    the first evaluation), so Tune's strict metric check passes and the searcher reads the
    final evaluation's value at the end, and ``evaluated_step``, the step that value is from
    (0 before it): ASHA's clock, so a rung compares trials at the same evaluation. Rank 0's
    checkpoints go to Ray's storage.
    """

    def __init__(self, objective: str):
        self.objective = objective
        self.latest = float("nan")
        self.evaluated_step = 0
        self.reported = False

    def report(self, metrics, *, step, checkpoint=None):
        import ray.train

        value = metrics.get(self.objective, metrics.get(f"eval/{self.objective}"))
        if value is not None:
            self.latest, self.evaluated_step = float(value), step
        payload = {**metrics, "step": step, OBJECTIVE: self.latest, EVALUATED_STEP: self.evaluated_step}
        ray_checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        ray.train.report(payload, checkpoint=ray_checkpoint, checkpoint_dir_name=f"step-{step}")
        self.reported = True

    def close(self):
        pass


def resume_point(ray_checkpoint_path: str | None, ray_copy: str | Path | None, run_dir: Path) -> Path | None:
    """The newer of Ray's checkpoint (stored as ``…/step-N``, read from ``ray_copy``, which may be
    a download directory of any name) and the run directory's own newest checkpoint that verifies;
    a damaged one is named in a warning and passed over (lambda_dpo.checkpoints)."""
    found = []
    if ray_copy is not None and (Path(ray_copy) / TRAINING_STATE).exists():
        problem = checkpoint_problem(Path(ray_copy))
        if problem is None:
            found.append((checkpoint_step(Path(ray_checkpoint_path).name), Path(ray_copy)))
        else:
            logger.warning(f"Ray's checkpoint {ray_checkpoint_path} is damaged ({problem}); falling back to the run directory's")
    local = latest_checkpoint(run_dir)
    if local is not None:
        found.append((checkpoint_step(local.name), local))
    return max(found, key=lambda pair: pair[0])[1] if found else None
