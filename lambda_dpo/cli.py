"""``lambda-dpo``: the command-line entry point. Each command lives next to what it drives."""

from __future__ import annotations

import argparse
import sys

from lambda_dpo.commands import add_model_parser, add_train_parsers
from lambda_dpo.console import show_warnings
from lambda_dpo.data.commands import add_data_parser


def build_parser() -> argparse.ArgumentParser:
    from search.commands import add_schedule_parser, add_sweep_parser

    parser = argparse.ArgumentParser(prog="lambda-dpo", description="λ-DPO fine-tuning and λ search over the preference simplex")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_data_parser(subparsers)
    add_model_parser(subparsers)
    add_schedule_parser(subparsers)
    add_train_parsers(subparsers)
    add_sweep_parser(subparsers)
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
