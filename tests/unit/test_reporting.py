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


def test_progress_is_plain_lines_when_the_console_is_not_a_terminal(monkeypatch):
    """Piped to a log file, the phases before training used to show nothing at all until the end."""
    import io

    from rich.console import Console

    from lambda_dpo.reporting import ProgressReporter

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=60)
    reporter = ProgressReporter(4, console=console)
    monkeypatch.setattr(reporter.training, "every_s", 0.0)
    assert list(reporter.track(iter("abc"), total=3, description="reference log-probs")) == ["a", "b", "c"]
    for step in (1, 2, 3):
        reporter.report({"train/loss": 1.0 / step}, step=step)
    reporter.report({"train/loss": 0.25}, step=3)  # the last step's own report comes with the final evaluation
    list(reporter.track(iter("xy"), total=2, description="generating"))  # the final evaluation's generation
    reporter.report({"train/loss": 0.25, "top1_accuracy/mixed": 0.5}, step=4)  # and its report, after it
    reporter.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "reference log-probs: started" and lines[1].startswith("reference log-probs: 3/3 (done in ")
    assert lines[2] == "training: started" and any(line.startswith("training: 2/4 (") and "about" in line for line in lines)
    done = [line for line in lines if line.startswith("training: 4/4 (done in ")]
    assert len(done) == 1 and done[0].endswith("train/loss=0.25")  # training's time excludes the generation after it
    assert lines.index(done[0]) < lines.index("generating: started") and lines[-1].startswith("generating: 2/2 (done in ")
    assert sum(line == "training: started" for line in lines) == 1
    assert not any("━" in line for line in lines)  # no bar drawn into the log
