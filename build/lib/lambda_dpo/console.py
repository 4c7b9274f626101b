"""Output for people: one rich Console for every command, and the library's warnings.

Piped output (logs, CI, `ray job logs`) is not cut at 80 columns. The library reports what a
user should know but that does not stop the run (prompts cut to fit, a skipped step) on the
``lambda_dpo`` logger; the CLI shows it as ``warning: …`` lines on stderr.
"""

import logging
import sys

from rich.console import Console

PIPED_WIDTH = 120
logger = logging.getLogger("lambda_dpo")


def make_console() -> Console:
    """A console for people; when piped, lines of text are never wrapped (a log line stays one
    line whatever its length) and tables get at least 120 columns."""
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, PIPED_WIDTH)
        console.soft_wrap = True
    return console


def show_warnings() -> None:
    """Print the library's warnings as one unwrapped ``warning: …`` line each, on stderr."""
    if not any(getattr(handler, "lambda_dpo", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler.lambda_dpo = True
        logger.addHandler(handler)
    logging.addLevelName(logging.WARNING, "warning")
    logger.setLevel(logging.INFO)
