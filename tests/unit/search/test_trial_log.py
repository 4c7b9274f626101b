"""The sweep's console lines and events file, driven by hand as Tune drives the callback."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from search.sweep_config import load_sweep_config
from search.trial_log import TrialLog, read_events, stopped_trials


class FakeTrial:
    def __init__(self, number, trial_id, weights, last_result=None, error_file=None):
        self.experiment_tag = f"{number}_lambda=…"
        self.trial_id = trial_id
        self.config = {"lambda": dict(zip(["helpfulness", "honesty", "instruction_following", "truthfulness"], weights))}
        self.last_result = last_result
        self.error_file = error_file


def start_log(tmp_path, *overrides):
    config = load_sweep_config("configs/sweep/tiny.yaml", [f"output_dir={tmp_path}", *overrides])
    out = io.StringIO()
    TrialLog.console = Console(file=out, width=60, soft_wrap=True, color_system=None)
    log = TrialLog(config)
    log.setup()
    return log, out


@pytest.fixture(autouse=True)
def no_console_left_behind():
    yield
    TrialLog.console = None


def test_one_line_per_start_and_end_with_the_running_best(tmp_path):
    log, out = start_log(tmp_path)
    first, second = FakeTrial(1, "aaaa", [0.25] * 4, {"objective": 0.61, "evaluated_step": 300}), FakeTrial(2, "bbbb", [1, 0, 0, 0], {"objective": 0.55})
    for trial in (first, second):
        log.on_trial_start(0, [], trial)
    log.on_trial_complete(0, [], first)
    log.on_trial_complete(0, [], second)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("8 trials, 2 at a time; λ = (helpfulness, honesty, instruction_following, truthfulness)")
    assert lines[1] == "trial   1/8 aaaa started  λ = (0.250, 0.250, 0.250, 0.250)"  # one line at 60 columns: never wrapped
    assert lines[3].startswith("trial   1/8 aaaa finished top1_accuracy/mixed 0.6100 in ") and lines[3].endswith("best so far 0.6100 (trial 1)")
    assert lines[4].endswith("best so far 0.6100 (trial 1)") and len(lines) == 5
    assert [event["event"] for event in read_events(tmp_path)] == ["started", "started", "finished", "finished"]


def test_a_resumed_sweep_keeps_its_running_best(tmp_path):
    log, _ = start_log(tmp_path)
    log.on_trial_complete(0, [], FakeTrial(3, "cccc", [0.25] * 4, {"objective": 0.7}))
    resumed, out = start_log(tmp_path)
    resumed.on_trial_complete(0, [], FakeTrial(4, "dddd", [1, 0, 0, 0], {"objective": 0.5}))
    assert out.getvalue().splitlines()[-1].endswith("best so far 0.7000 (trial 3)")


def test_the_running_best_starts_from_the_warm_start_rows(tmp_path):
    warm = tmp_path / "earlier.csv"
    warm.write_text("helpfulness,honesty,instruction_following,truthfulness,objective\n1,0,0,0,0.58\n0,1,0,0,0.64\n")
    log, out = start_log(tmp_path, f"searcher.warm_start={warm}")
    log.on_trial_complete(0, [], FakeTrial(1, "aaaa", [0.25] * 4, {"objective": 0.61}))
    log.on_trial_complete(0, [], FakeTrial(2, "bbbb", [0, 0, 1, 0], {"objective": 0.66}))
    lines = out.getvalue().splitlines()
    assert lines[1].endswith("best so far 0.6400 (warm-start-1)") and lines[2].endswith("best so far 0.6600 (trial 2)")


def test_a_trial_early_stopping_ended_is_said_and_recorded_so(tmp_path):
    log, out = start_log(tmp_path, "tune.trial_scheduler=asha", "train.eval.every=50", "tune.grace_period=50")
    log.on_trial_complete(0, [], FakeTrial(2, "bbbb", [1, 0, 0, 0], {"objective": 0.41, "evaluated_step": 50}))
    log.on_trial_complete(0, [], FakeTrial(3, "cccc", [0.25] * 4, {"objective": 0.66, "evaluated_step": 300}))
    lines = out.getvalue().splitlines()
    assert "trial   2/8 bbbb stopped  by ASHA at step 50: top1_accuracy/mixed 0.4100 there" in lines[1]
    assert "finished" in lines[2] and "best so far 0.6600 (trial 3)" in lines[2]
    assert stopped_trials(tmp_path) == {"bbbb": 50}


def test_a_failed_trial_names_its_error_and_the_files_to_read(tmp_path):
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  ...\nValueError: data.source nope: no such file\n")
    log, out = start_log(tmp_path)
    log.on_trial_error(0, [], FakeTrial(5, "eeee", [0, 0, 1, 0], error_file=str(error_file)))
    text = out.getvalue()
    assert "trial   5/8 eeee FAILED   after " in text and "ValueError: data.source nope: no such file" in text
    assert f"read {error_file} and {tmp_path / 'logs' / 'ray.log'}" in text
    assert json.loads((tmp_path / "logs" / "trials.jsonl").read_text())["event"] == "failed"


def test_the_callback_pickles_without_its_console(tmp_path):
    import pickle

    log, _ = start_log(tmp_path)
    assert pickle.loads(pickle.dumps(log)).config.name == "tiny"
