"""Where the training loop sends its metrics: a small interface with local implementations.

The loop calls ``report(metrics, step=..., checkpoint=...)`` and nothing else, so the same loop
runs standalone (JSONL + TensorBoard + a progress bar) and inside a Ray Train worker (the sweep
plugs in a reporter that forwards to ``ray.train.report``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Protocol, Sequence


class Reporter(Protocol):
    def report(self, metrics: dict[str, float], *, step: int, checkpoint: Path | None = None) -> None: ...

    def close(self) -> None: ...


class JsonlReporter:
    """Appends one JSON line per report (``metrics.jsonl`` next to the run).

    A resumed run repeats the steps after its checkpoint: its first report drops the rows an
    earlier process logged from that step on, so each step is logged once."""

    def __init__(self, path: Path):
        self.path = path
        self.started = False
        path.parent.mkdir(parents=True, exist_ok=True)

    def report(self, metrics, *, step, checkpoint=None):
        if not self.started:
            self.started = True
            self._drop_rows_from(step)
        row = {"step": step, **{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}}
        if checkpoint is not None:
            row["checkpoint"] = str(checkpoint)
        with self.path.open("a") as stream:
            stream.write(json.dumps(row) + "\n")

    def _drop_rows_from(self, step: int) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if _logged_step(line) < step]
        if len(kept) < len(lines):
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text("".join(kept))
            partial.replace(self.path)

    def close(self):
        pass


def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line (-inf for a line that cannot be read: kept, never lost)."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return float("-inf")
    return step if isinstance(step, (int, float)) else float("-inf")


class TensorBoardReporter:
    """Scalars for TensorBoard (``tensorboard --logdir RUN/tensorboard``)."""

    def __init__(self, directory: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(directory))

    def report(self, metrics, *, step, checkpoint=None):
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not math.isnan(value):
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self):
        self.writer.close()


class ProgressReporter:
    """A rich progress bar over optimizer steps showing the latest loss and accuracy, with a bar of
    its own for each phase before them. When the console is not a terminal (a log file, ``ray job
    logs``) a live bar shows nothing until the end, so each phase prints plain lines instead: when
    it starts, at most every :attr:`PIPED_EVERY_S` seconds, and when it ends."""

    SHOWN = ("train/loss", "top1_accuracy/mixed", "train/tokens_per_second")
    PIPED_EVERY_S = 30.0

    def __init__(self, total_steps: int | None, *, description: str = "training", console=None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = console or Console()
        self.piped = not self.console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[latest]}"),
            console=self.console,
            transient=False,
        )
        self.description, self.total_steps = description, total_steps
        self.task = None  # added at the first report, below the bars of the steps before training
        self.started = False
        self.training = PipedPhase(self.console, description, total_steps, self.PIPED_EVERY_S)
        self.phase_ended = time.monotonic()  # training starts when the phases before it end, not at its first report

    def _start(self) -> None:
        if not self.started and not self.piped:  # started by the first use, so set-up errors print cleanly
            self.progress.start()
            self.started = True

    def track(self, iterable, *, total: int, description: str):
        """Iterate ``iterable`` with a bar of its own above the training bar (a step before training)."""
        if self.piped:
            self.training.finish(completed=True)  # a phase after training has begun (the final generation): training is over
            phase = PipedPhase(self.console, description, total, self.PIPED_EVERY_S)
            for done, item in enumerate(iterable, start=1):
                yield item
                phase.update(done)
            phase.finish()
            self.phase_ended = time.monotonic()
            return
        self._start()
        task = self.progress.add_task(description, total=total, latest="")
        for item in iterable:
            yield item
            self.progress.advance(task)

    def report(self, metrics, *, step, checkpoint=None):
        latest = "  ".join(f"{name}={metrics[name]:.4g}" for name in self.SHOWN if name in metrics)
        if self.piped:
            self.training.update(step, latest, started=self.phase_ended)
            return
        self._start()
        if self.task is None:
            self.task = self.progress.add_task(self.description, total=self.total_steps, latest="")
        self.progress.update(self.task, completed=step, latest=latest)

    def close(self):
        if self.piped:
            self.training.finish()
        if self.started:
            self.progress.stop()


class PipedPhase:
    """Progress of one phase as plain lines, for a console that is not a terminal."""

    def __init__(self, console, description: str, total: int | None, every_s: float):
        self.console, self.description, self.total, self.every_s = console, description, total, every_s
        self.started = self.shown = None
        self.done, self.latest = 0, ""
        self.finished = False

    def update(self, done: int, latest: str = "", *, started: float | None = None) -> None:
        """``done`` of ``total`` so far; ``started``: when the phase began, if before this first update."""
        now = time.monotonic()
        if self.finished:  # the final evaluation's report, after training's own lines
            return
        if self.started is None:
            self.started, self.shown = started if started is not None else now, now
            self.console.print(f"{self.description}: started")
        self.done, self.latest = done, latest or self.latest
        if now - self.shown >= self.every_s:
            self.shown = now
            self.console.print(self._line(now))

    def finish(self, *, completed: bool = False) -> None:
        """The phase's last line; ``completed``: it ran to its total (its last step may not have been reported yet)."""
        if completed and self.total:
            self.done = self.total
        if self.started is not None and not self.finished:
            self.console.print(self._line(time.monotonic(), finished=True))
            self.finished = True

    def _line(self, now: float, finished: bool = False) -> str:
        elapsed = now - self.started
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        left = ""
        if self.total and 0 < self.done < self.total and not finished:
            left = f", about {_duration(elapsed * (self.total - self.done) / self.done)} left"
        state = "done in " if finished else ""
        return f"{self.description}: {count} ({state}{_duration(elapsed)}{left})" + (f"  {self.latest}" if self.latest else "")


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class Reporters:
    """Several reporters as one."""

    def __init__(self, reporters: Sequence[Reporter]):
        self.reporters = list(reporters)

    def track(self, iterable, *, total: int, description: str):
        for reporter in self.reporters:
            if hasattr(reporter, "track"):
                return reporter.track(iterable, total=total, description=description)
        return iterable

    def report(self, metrics, *, step, checkpoint=None):
        for reporter in self.reporters:
            reporter.report(metrics, step=step, checkpoint=checkpoint)

    def close(self):
        for reporter in self.reporters:
            reporter.close()


def track(reporter, iterable, *, total: int, description: str):
    """``iterable``, shown as a progress bar when ``reporter`` can show one (:class:`ProgressReporter`)."""
    tracker = getattr(reporter, "track", None)
    return tracker(iterable, total=total, description=description) if tracker else iterable
