"""Output for people: one rich Console for every command, and the library's warnings.

Piped output (logs, CI, `ray job logs`) is not cut at 80 columns. The library reports what a
user should know but that does not stop the run (prompts cut to fit, a skipped step) on the
``lambda_dpo`` logger; the CLI shows it as ``warning: …`` lines on stderr.
"""

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import IO, Iterator

from rich.console import Console

PIPED_WIDTH = 120
logger = logging.getLogger("lambda_dpo")


def make_console(file: IO[str] | None = None) -> Console:
    """A console for people (on ``file``, default stdout); when piped, lines of text are never
    wrapped (a log line stays one line whatever its length) and tables get at least 120 columns."""
    console = Console(file=file)
    if not console.is_terminal:
        console.width = max(console.width, PIPED_WIDTH)
        console.soft_wrap = True
    return console


class StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record comes, not to the stream of the first
    call: a process that redirects stderr later (a test's capture, an embedding program) still
    gets its warnings."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def show_warnings() -> None:
    """Print the library's warnings as one unwrapped ``warning: …`` line each, on stderr."""
    if not any(getattr(handler, "lambda_dpo", False) for handler in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler.lambda_dpo = True
        logger.addHandler(handler)
    logging.addLevelName(logging.WARNING, "warning")
    logger.setLevel(logging.INFO)


@contextlib.contextmanager
def output_to_file(path: Path) -> Iterator[IO[str]]:
    """Send everything written to this process's stdout and stderr to ``path`` (appended) and
    yield a text stream on the terminal they were on. It works on the file descriptors, not on
    ``sys.stdout``: Ray's C++ core and its forwarding of worker output write to fds 1 and 2."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    try:
        with open(path, "a") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        terminal.close()
