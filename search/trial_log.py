"""What a running sweep tells a person: a line when a trial starts, a line when it ends (status,
objective, minutes, the best so far), and for a failed trial the file to read. The same events go
to ``logs/trials.jsonl`` in the sweep directory, where :func:`stopped_trials` finds the trials
that early stopping ended (Tune's results alone cannot tell them from interrupted ones).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ray.tune import Callback
from rich.console import Console
from rich.markup import escape

from search.searcher import EVALUATED_STEP, trial_lambda
from search.sweep_config import OBJECTIVE, SweepConfig, warm_start_rows


def trial_number(trial) -> str:
    """Tune's creation counter (``3`` of experiment tag ``3_lambda=…``), else the trial id."""
    counter = trial.experiment_tag.split("_", 1)[0]
    return counter if counter.isdigit() else trial.trial_id


LOGS = "logs"
EVENTS_FILE = "trials.jsonl"
RAY_LOG = "ray.log"


def events_path(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / LOGS / EVENTS_FILE


def read_events(sweep_dir: Path) -> list[dict]:
    path = events_path(sweep_dir)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def stopped_trials(sweep_dir: Path) -> dict[str, int]:
    """``{trial_id: step}`` of the trials that early stopping ended, and the step of their last evaluation."""
    return {event["trial_id"]: event["step"] for event in read_events(sweep_dir) if event["event"] == "stopped"}


class TrialLog(Callback):
    """A Tune callback: each trial's start and end on :attr:`console` and in ``logs/trials.jsonl``.

    Tune pickles its callbacks with the experiment and a resumed sweep gets them back from there,
    so the console is a class attribute that the running driver sets, and the state of a run is
    rebuilt in :meth:`setup` from the events file.
    """

    console: Console | None = None

    def __init__(self, config: SweepConfig):
        self.config = config
        self.path = events_path(config.sweep_dir())
        self.started: dict[str, float] = {}
        self.best: tuple[float, str] | None = None

    def setup(self, **info):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.started, self.best = {}, None
        sign = 1 if self.config.mode == "max" else -1
        for k, score in enumerate(warm_start_rows(self.config)[1]):  # the searcher starts from them: so does the best
            self._update_best(float(score), f"warm-start-{k}", sign)
        for event in read_events(self.config.sweep_dir()):  # a resumed sweep keeps its running best
            if event["event"] == "finished":
                self._update_best(event["objective"], f"trial {event['number']}", sign)
        names = ", ".join(self.config.dimensions)
        if self.console is not None:
            self.console.print(f"{self.config.searcher.num_trials} trials, {self.config.searcher.max_concurrent} at a time; λ = ({names}); "
                               f"Ray's own output: {self.path.parent / RAY_LOG}", highlight=False)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.monotonic()
        weights = trial_lambda(trial.config, self.config.dimensions)
        self._record(trial, "started", **{"lambda": [float(w) for w in weights]})
        self._say(trial, "started", f"λ = ({', '.join(f'{w:.3f}' for w in weights)})")

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        value, step = result.get(OBJECTIVE, math.nan), int(result.get(EVALUATED_STEP) or 0)
        minutes = self._minutes(trial)
        if self.config.final_step is not None and step < self.config.final_step:
            self._record(trial, "stopped", step=step, objective=value, minutes=minutes)
            self._say(trial, "stopped", f"by ASHA at step {step}: {self.config.objective} {value:.4f} there; {minutes:.1f} min", "yellow")
            return
        self._record(trial, "finished", objective=value, minutes=minutes)
        self._update_best(value, f"trial {trial_number(trial)}", 1 if self.config.mode == "max" else -1)
        best = f"best so far {self.best[0]:.4f} ({self.best[1]})" if self.best else ""
        self._say(trial, "finished", f"{self.config.objective} {value:.4f} in {minutes:.1f} min; {best}", "green")

    def on_trial_error(self, iteration, trials, trial, **info):
        minutes = self._minutes(trial)
        error_file = trial.error_file or "(none written)"
        first_line = next((line for line in reversed(_read(error_file).splitlines()) if line.strip()), "see the error file")
        self._record(trial, "failed", minutes=minutes, error_file=error_file)
        self._say(trial, "FAILED", f"after {minutes:.1f} min: {first_line}\n    read {error_file} and {self.path.parent / RAY_LOG}", "red")

    def _update_best(self, value: float, label: str, sign: int) -> None:
        if math.isfinite(value) and (self.best is None or sign * value > sign * self.best[0]):
            self.best = (value, label)

    def _minutes(self, trial) -> float:
        return (time.monotonic() - self.started.get(trial.trial_id, time.monotonic())) / 60

    def _record(self, trial, event: str, **fields) -> None:
        payload = {"time": time.time(), "event": event, "trial_id": trial.trial_id, "number": trial_number(trial), **fields}
        with self.path.open("a") as log:
            log.write(json.dumps(payload) + "\n")

    def _say(self, trial, event: str, text: str, colour: str = "") -> None:
        label = f"[{colour}]{event:<8}[/]" if colour else f"{event:<8}"
        total = self.config.searcher.num_trials
        if self.console is not None:
            self.console.print(f"trial {trial_number(trial):>3}/{total} {trial.trial_id} {label} {escape(text)}", highlight=False)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
