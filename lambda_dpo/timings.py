"""Wall-clock marks of where a run's time goes: ``timings.jsonl`` in the run directory.

The training loop marks its phases (data and tokenizer, SFT warm start, reference pass, training,
final evaluation); in a sweep its Ray Train worker also marks when it began. When Tune started and
ended the trial comes from the sweep's own trial log (``logs/trials.jsonl``, written by the Tune
driver): nothing is written from Tune's trial process, whose result queues deadlocked on a write
after ``fit()`` returned. Marks are epoch seconds, so marks of different processes line up.
``benchmarks/sweep_overhead.py`` turns them into a table of phases.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

TIMINGS_FILE = "timings.jsonl"
# In the order a run passes them; each phase of the table runs from one mark to the next.
WORKER_STARTED = "worker_started"
TRAIN_STARTED, DATA_READY, WARM_START_DONE, REFERENCE_READY = "train_started", "data_ready", "warm_start_done", "reference_ready"
TRAINING_DONE, EVALUATION_DONE = "training_done", "evaluation_done"
MARKS = (WORKER_STARTED, TRAIN_STARTED, DATA_READY, WARM_START_DONE, REFERENCE_READY, TRAINING_DONE, EVALUATION_DONE)
# A sweep trial's start and end, from the sweep's trial log (search.trial_log), around the marks.
TRIAL_STARTED, TRIAL_ENDED = "trial_started", "trial_ended"


def mark(run_dir: str | Path, event: str, **figures: float) -> None:
    """Append ``event`` at the current time (and any ``figures``, e.g. seconds spent saving) to the run's timings."""
    if event not in MARKS:
        raise ValueError(f"unknown timing mark {event!r}; one of {', '.join(MARKS)}")
    path = Path(run_dir) / TIMINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as stream:  # one short line per write: appends from a trial's processes do not interleave
        stream.write(json.dumps({"event": event, "time": time.time(), "pid": os.getpid(), **figures}) + "\n")


def read_marks(run_dir: str | Path) -> dict[str, dict]:
    """The run's marks by event, the latest of each (a resumed run marks its phases again)."""
    path = Path(run_dir) / TIMINGS_FILE
    if not path.exists():
        return {}
    marks = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed process
        marks[row["event"]] = row
    return marks
