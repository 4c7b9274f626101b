"""Reading a finished (or running) sweep directory back for analysis: the notebooks' library.

    results = load_sweep("runs/sweeps/tiny")
    results.table                      # results.csv: one row per trial, λ and objective
    results.best_so_far()              # the running best, trial by trial
    results.trial_metrics("c2cb7e4b")  # the trial's final held-out evaluation (eval.json)
    results.fit()                      # the scheduler refitted on the finished trials
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from search.lambda_scheduler import PolynomialScheduler, effective_sample_size, leave_one_out  # noqa: F401  (the notebooks use it from here)
from search.searcher import LAMBDA_KEY
from search.sweep_config import CONFIG_FILE, OBJECTIVE, RESULTS_FILE, SweepConfig, load_sweep_config, warm_start_rows

EXAMPLE = Path(__file__).parent / "examples" / "tiny-sweep"  # a real `make demo` sweep, shipped
# configs/sweep/smollm2-135m-verifiable.yaml as run on 2 CPU cores: SmolLM2-135M-Instruct scored by its greedy answers
REAL_MODEL_EXAMPLE = Path(__file__).parent / "examples" / "smollm2-verifiable-sweep"


@dataclass
class SweepResults:
    directory: Path
    config: SweepConfig
    table: pd.DataFrame

    @property
    def dimensions(self) -> list[str]:
        return self.config.dimensions

    def lambdas(self) -> np.ndarray:
        return self.table[[f"lambda/{d}" for d in self.dimensions]].to_numpy(float)

    def objective(self) -> np.ndarray:
        return self.table[OBJECTIVE].astype(float).to_numpy()

    def best_so_far(self) -> np.ndarray:
        """The best finite objective among the first t trials, for every t (NaN before the first)."""
        accumulate = np.fmax.accumulate if self.config.mode == "max" else np.fmin.accumulate
        return accumulate(self.objective())

    def best(self, ran_here: bool = False) -> pd.Series | None:
        """The best finished row; ``ran_here``: among this sweep's own trials, leaving out the
        ``searcher.warm_start`` rows (they bring an objective but no ``runs/<trial>/eval.json``)."""
        return best_trial(self.config, self.own_trials() if ran_here else self.table)

    def centroid(self, ran_here: bool = False) -> pd.Series | None:
        """The first row at the centroid λ (``ran_here``: as in :meth:`best`)."""
        return centroid_trial(self.config, self.own_trials() if ran_here else self.table)

    def own_trials(self) -> pd.DataFrame:
        return self.table[self.table["status"] != WARM_START]

    def trial_metrics(self, trial_id: str) -> dict[str, float]:
        """The trial's final held-out metrics (``runs/<trial>/eval.json``)."""
        path = self.directory / "runs" / str(trial_id) / "eval.json"
        if not path.is_file():
            raise FileNotFoundError(f"trial {trial_id}: no final evaluation at {path} (unfinished or errored trial?)")
        return json.loads(path.read_text())["metrics"]

    def per_dimension(self, trial_id: str, families=("verifiable", "top1_accuracy", "reward_accuracy", "ndcg", "loss")) -> pd.DataFrame:
        """Rows: the metric families the trial's evaluation has (``verifiable``: generation scores,
        with a generating evaluation only); columns: the dimensions (and ``mixed`` where the metric has it)."""
        metrics = self.trial_metrics(trial_id)
        columns = [*self.dimensions, "mixed"]
        rows = {family: {c: metrics.get(f"{family}/{c}", np.nan) for c in columns} for family in families}
        return pd.DataFrame(rows).T.dropna(how="all").dropna(axis=1, how="all")

    def fit(self, **settings) -> PolynomialScheduler | None:
        """The sweep's scheduler refitted on the finished trials; ``settings`` override its own."""
        config = dataclasses.replace(self.config, lambda_scheduler=dataclasses.replace(self.config.lambda_scheduler, **settings))
        return fitted_schedule(config, self.table)

    def leave_one_out(self) -> pd.DataFrame:
        """Each finished trial's objective beside the scheduler's prediction of it from the other
        finished trials (the sweep's own settings refitted n times), and the error."""
        finished = self.table[np.isfinite(self.table[OBJECTIVE].astype(float))]
        fitted = self.fit()  # fitted on the same rows, in the same order (−objective when minimising)
        predicted = fitted_sign(self.config) * leave_one_out(fitted, fitted.observed_lambdas_, fitted.observed_scores_)
        return pd.DataFrame({"trial_id": finished["trial_id"].to_numpy(), OBJECTIVE: finished[OBJECTIVE].to_numpy(float),
                             "predicted": predicted, "error": predicted - finished[OBJECTIVE].to_numpy(float)})


def load_sweep(directory: str | Path = EXAMPLE) -> SweepResults:
    """A sweep directory's ``sweep.yaml`` and ``results.csv`` (written when the sweep ends)."""
    directory = Path(directory)
    for name in (CONFIG_FILE, RESULTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} is not a finished sweep directory: {name} is missing")
    config = load_sweep_config(directory / CONFIG_FILE)
    table = pd.read_csv(directory / RESULTS_FILE, dtype={"trial_id": str})
    return SweepResults(directory, config, table)


def best_checkpoint(directory: str | Path) -> tuple[Path, str] | None:
    """``(checkpoint, description)`` of the sweep's best own trial (by its objective): its final
    checkpoint, for ``lambda-dpo export SWEEP_DIR``; None when ``directory`` is not a sweep's."""
    from lambda_dpo.checkpoints import latest_checkpoint

    if not (Path(directory) / CONFIG_FILE).is_file():
        return None
    sweep = load_sweep(directory)
    best = sweep.best(ran_here=True)
    if best is None:
        raise ValueError(f"{directory}: no trial of this sweep finished with an objective, so there is no best trial to export")
    checkpoint = latest_checkpoint(sweep.directory / "runs" / str(best["trial_id"]))
    if checkpoint is None:
        raise FileNotFoundError(f"{directory}: the best trial {best['trial_id']} has no intact checkpoint under runs/{best['trial_id']}/checkpoints")
    weights = ", ".join(f"{d} {best[f'lambda/{d}']:.3f}" for d in sweep.dimensions)
    return checkpoint, f"trial {best['trial_id']}, the best by {sweep.config.objective} ({float(best[OBJECTIVE]):.4f}), λ = ({weights})"


def at_temperature(scheduler: PolynomialScheduler, temperature: float) -> PolynomialScheduler:
    """The same fit and candidates with another τ (the candidates are drawn from the same seed)."""
    return clone(scheduler).set_params(temperature=temperature).fit(scheduler.observed_lambdas_, scheduler.observed_scores_)


# ----------------------------------------------------------------------------- a sweep's outputs


INTERRUPTED = "INTERRUPTED"  # stopped before its end (Ctrl-C, a killed driver): `sweep --resume` continues it
STOPPED = "STOPPED"  # ended early by the trial scheduler (ASHA): its objective is not a final one


def trial_status(result, stopped: bool = False, evaluated: bool = False) -> str:
    """ERROR, TERMINATED (ran to its end: its fine-tune wrote its final ``eval.json``, ``evaluated``,
    or Tune marked its last result done), STOPPED (early stopping ended it: ``stopped``) or
    INTERRUPTED."""
    if result.error:
        return "ERROR"
    if stopped:  # before `done`: Tune marks the last result of a trial its scheduler stopped done too
        return STOPPED
    # `done` alone is not enough: Tune.restore of a finished sweep gives it back for one trial only.
    return "TERMINATED" if evaluated or (result.metrics or {}).get("done") else INTERRUPTED


WARM_START = "WARM_START"  # the status of a row taken from searcher.warm_start


def results_table(config: SweepConfig, results) -> pd.DataFrame:
    """One row per trial in creation order: id, status, λ, objective (of finished trials only),
    table metrics, step; the ``searcher.warm_start`` rows first, as the searcher saw them."""
    from search.trial_log import stopped_trials

    stopped = frozenset(stopped_trials(config.sweep_dir()))
    rows = [{"trial_id": f"warm-start-{k}", "status": WARM_START, **{f"lambda/{d}": w for d, w in zip(config.dimensions, weights)}, OBJECTIVE: score}
            for k, (weights, score) in enumerate(zip(*warm_start_rows(config)))]
    for result in sorted(results, key=lambda r: Path(r.path).name):
        trial_config = result.config or {}
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or Path(result.path).name.rsplit("-", 1)[-1]
        evaluated = (config.sweep_dir() / "runs" / str(trial_id) / "eval.json").is_file()
        row = {"trial_id": trial_id, "status": trial_status(result, trial_id in stopped, evaluated)}
        weights = trial_config.get(LAMBDA_KEY, {})
        row |= {f"lambda/{d}": weights.get(d, float("nan")) for d in config.dimensions}
        row[OBJECTIVE] = metrics.get(OBJECTIVE, float("nan")) if row["status"] == "TERMINATED" else float("nan")
        row |= {name: metrics.get(name, float("nan")) for name in config.table_metrics}
        row["step"] = metrics.get("step", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=["trial_id", "status", *(f"lambda/{d}" for d in config.dimensions), OBJECTIVE, *config.table_metrics, "step"])


def fitted_schedule(config: SweepConfig, table: pd.DataFrame) -> PolynomialScheduler | None:
    finished = table[np.isfinite(table[OBJECTIVE].astype(float))]
    if len(finished) < 2:
        return None
    lambdas = finished[[f"lambda/{d}" for d in config.dimensions]].to_numpy(float)
    return config.lambda_scheduler.build(dimensions=config.dimensions, random_state=config.searcher.seed).fit(lambdas, fitted_sign(config) * finished[OBJECTIVE].to_numpy(float))


def fitted_sign(config: SweepConfig) -> float:
    """The scheduler maximises: it is fitted on the objective, or on −objective when the sweep minimises."""
    return 1.0 if config.mode == "max" else -1.0


def write_outputs(config: SweepConfig, table: pd.DataFrame) -> dict[str, Path]:
    """results.csv, schedule.json (+ schedule.png) and objective.png in the sweep directory."""
    from search.plots import plot_objective, plot_schedule

    sweep_dir = config.sweep_dir()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    written = {"results": sweep_dir / RESULTS_FILE}
    table.to_csv(written["results"], index=False)
    title = f"λ sweep {config.name} ({config.searcher.name} searcher)"
    columns = [f"lambda/{d}" for d in config.dimensions]
    written["objective_plot"] = plot_objective(table[OBJECTIVE], sweep_dir / "objective.png", mode=config.mode, label=config.objective, title=title,
                                               lambdas=table[columns].to_numpy(float), dimensions=config.dimensions)
    schedule = fitted_schedule(config, table)
    if schedule is not None:
        written["schedule"] = sweep_dir / "schedule.json"
        schedule.to_json(written["schedule"])
        numbers = [str(k + 1) for k in np.flatnonzero(np.isfinite(table[OBJECTIVE].astype(float)))]  # as in objective.png
        score = config.objective if config.mode == "max" else f"−{config.objective} (minimised)"
        written["schedule_plot"] = plot_schedule(schedule, sweep_dir / "schedule.png", labels=numbers, score_label=f"fitted {score}")
    return written


def best_trial(config: SweepConfig, table: pd.DataFrame) -> pd.Series | None:
    finished = table[np.isfinite(table[OBJECTIVE].astype(float))]
    if not len(finished):
        return None
    index = finished[OBJECTIVE].astype(float).idxmax() if config.mode == "max" else finished[OBJECTIVE].astype(float).idxmin()
    return finished.loc[index]


def centroid_rows(config: SweepConfig, table: pd.DataFrame) -> pd.DataFrame:
    """Every row at the centroid λ (a warm start may hold several seeds of it)."""
    lambdas = table[[f"lambda/{d}" for d in config.dimensions]].to_numpy(float)
    return table[np.abs(lambdas - 1.0 / len(config.dimensions)).max(axis=1) < 1e-6]


def centroid_trial(config: SweepConfig, table: pd.DataFrame) -> pd.Series | None:
    rows = centroid_rows(config, table)
    return rows.iloc[0] if len(rows) else None
