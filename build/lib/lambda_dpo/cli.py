"""``lambda-dpo``: the command-line entry point. Each command lives next to what it drives."""

from __future__ import annotations

import argparse
import signal
import sys

from lambda_dpo import __version__
from lambda_dpo.commands import add_config_parser, add_model_parser, add_train_parsers
from lambda_dpo.console import show_warnings
from lambda_dpo.data.commands import add_data_parser


COMMAND_GROUP = "lambda_dpo.commands"  # entry points that add subcommands (search/ adds schedule and sweep)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command: the library's own, then those other packages register under
    :data:`COMMAND_GROUP` (so this package never imports the λ search that builds on it)."""
    from importlib.metadata import entry_points

    parser = argparse.ArgumentParser(prog="lambda-dpo", description="λ-DPO fine-tuning and λ search over the preference simplex")
    parser.add_argument("--version", action="version", version=f"lambda-dpo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_data_parser(subparsers)
    add_model_parser(subparsers)
    add_config_parser(subparsers)
    add_train_parsers(subparsers)
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda entry: entry.name):
        entry.load()(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also come after flags (`sweep CONFIG --dry-run a.b=1`).
    if extra:
        if not hasattr(args, "overrides") or not all("=" in item and not item.startswith("-") for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*(args.overrides or []), *extra]
    show_warnings()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `lambda-dpo … | head` ends quietly, as other command-line tools do
    import datasets

    datasets.disable_progress_bars()  # reading a local file takes a moment; its bar is noise
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as error:
        # Bad input is the user's to fix: say what is wrong without a traceback.
        print(f"lambda-dpo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
