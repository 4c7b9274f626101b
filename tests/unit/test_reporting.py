"""Local reporters: metrics.jsonl logs each step once, across resumes."""

import json

from lambda_dpo.reporting import JsonlReporter


def test_a_resumed_run_logs_each_step_once(tmp_path):
    """A resume from step 2 used to append steps 3 and 4 a second time after the first process's rows."""
    path = tmp_path / "metrics.jsonl"
    first = JsonlReporter(path)
    for step in (1, 2, 3, 4):
        first.report({"train/loss": 1.0 / step}, step=step)
    path.write_text(path.read_text() + "not json\n")  # a line cut short by the kill is kept, not lost
    resumed = JsonlReporter(path)
    for step in (3, 4, 5):
        resumed.report({"train/loss": 0.1}, step=step)
    lines = path.read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines if line.startswith("{")]
    assert steps == [1, 2, 3, 4, 5] and "not json" in lines
    assert [json.loads(line)["train/loss"] for line in lines if line.startswith("{")][2:] == [0.1, 0.1, 0.1]
