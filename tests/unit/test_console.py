"""Output for people: where a redirected process's output goes."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, sys
from pathlib import Path
from lambda_dpo.console import make_console, output_to_file
with output_to_file(Path(sys.argv[1])) as terminal:
    print("python stdout")
    print("python stderr", file=sys.stderr)
    os.write(1, b"fd 1 from C\\n")
    os.write(2, b"fd 2 from C\\n")
    make_console(terminal).print("for people")
print("after")
"""


def test_output_to_file_takes_both_file_descriptors_and_leaves_a_stream_on_the_terminal(tmp_path):
    log = tmp_path / "logs" / "ray.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, check=True)
    assert done.stdout == "for people\nafter\n" and done.stderr == ""
    assert sorted(log.read_text().splitlines()) == ["fd 1 from C", "fd 2 from C", "python stderr", "python stdout"]


def test_warnings_go_to_the_stderr_of_the_moment_not_the_one_of_the_first_call(monkeypatch):
    """The handler used to keep the first sys.stderr it saw: after a redirection, warnings vanished."""
    import io
    import sys

    from lambda_dpo.console import logger, show_warnings

    first, later = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    show_warnings()
    monkeypatch.setattr(sys, "stderr", later)
    show_warnings()
    logger.warning("checkpoint step-4 is damaged")
    assert later.getvalue() == "warning: checkpoint step-4 is damaged\n" and first.getvalue() == ""
