"""The run's wall-clock marks, and the phase table the sweep-overhead benchmark builds from them."""

import json
import sys
from pathlib import Path

import pytest

from lambda_dpo import timings

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import sweep_overhead  # noqa: E402


def write_marks(run_dir: Path, times: dict[str, float], **extra) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"event": event, "time": at, "pid": 1, **extra.get(event, {})}) for event, at in times.items()]
    (run_dir / timings.TIMINGS_FILE).write_text("\n".join(lines) + "\n")


def test_marks_are_appended_and_the_latest_of_each_is_read(tmp_path):
    timings.mark(tmp_path, timings.TRAIN_STARTED)
    timings.mark(tmp_path, timings.DATA_READY)
    timings.mark(tmp_path, timings.TRAIN_STARTED)  # a resumed run marks its phases again
    with (tmp_path / timings.TIMINGS_FILE).open("a") as stream:
        stream.write('{"event": "data_re')  # cut short by a killed process
    marks = timings.read_marks(tmp_path)
    assert set(marks) == {timings.TRAIN_STARTED, timings.DATA_READY}
    assert marks[timings.TRAIN_STARTED]["time"] >= marks[timings.DATA_READY]["time"]
    assert timings.read_marks(tmp_path / "nothing") == {}
    with pytest.raises(ValueError, match="unknown timing mark 'trained'"):
        timings.mark(tmp_path, "trained")


def test_a_trials_phases_run_from_mark_to_mark(tmp_path):
    times = dict(zip(timings.MARKS, (104.0, 109.0, 110.0, 113.0, 115.0, 135.0, 136.0)))
    write_marks(tmp_path / "runs" / "a", times, training_done={"saving_seconds": 2.5})
    write_marks(tmp_path / "runs" / "b", {event: at + 60 for event, at in times.items()})
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "trials.jsonl").write_text("".join(  # the Tune driver's trial log: each trial's start and end
        json.dumps({"time": at + shift, "event": event, "trial_id": trial}) + "\n"
        for trial, shift in (("a", 0.0), ("b", 60.0)) for event, at in (("started", 100.0), ("finished", 140.0))))
    figures = sweep_overhead.sweep_phases(tmp_path, started=90.0, ended=205.0, concurrency=2)
    a = figures["trials"]["a"]
    assert a["Ray Train worker start"] == 4 and a["imports and set-up until the loop"] == 5 and a["data and tokenizer"] == 1
    assert a["SFT warm start"] == 3 and a["reference pass"] == 2 and a["training (checkpoints and reports included)"] == 20
    assert a["final evaluation"] == 1 and a["final report and teardown"] == 4 and a["total"] == 40
    assert a["of which checkpoints and reports"] == 2.5
    # Two slots from 100 to 200 (200 s), 80 s of trials in them; 10 s before the first, 5 s after the last.
    assert figures["sweep"] == {"trial slots idle": 120.0, "Ray and Tune start-up, before the first trial": 10.0, "after the last trial (outputs, Ray shut-down)": 5.0}


def test_a_plain_run_takes_its_process_start_and_exit_for_the_trials(tmp_path):
    write_marks(tmp_path, {timings.TRAIN_STARTED: 12.0, timings.DATA_READY: 13.0, timings.EVALUATION_DONE: 30.0})
    seconds = sweep_overhead.phase_seconds(timings.read_marks(tmp_path), started=10.0, ended=31.0)
    assert seconds["Ray Train worker start"] == 0 and seconds["imports and set-up until the loop"] == 2
    assert seconds["final report and teardown"] == 1 and seconds["total"] == 21
