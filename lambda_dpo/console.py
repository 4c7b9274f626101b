"""One rich Console for every command: piped output (logs, CI, `ray job logs`) is not cut at 80 columns."""

from rich.console import Console

PIPED_WIDTH = 120


def make_console() -> Console:
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, PIPED_WIDTH)
    return console
