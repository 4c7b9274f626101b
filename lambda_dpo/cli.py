"""``lambda-dpo``: the command-line entry point. Each command lives next to what it drives."""

from __future__ import annotations

import argparse
import signal
import sys

from lambda_dpo import __version__
from lambda_dpo.commands import add_config_parser, add_model_parser, add_train_parsers
from lambda_dpo.console import show_warnings
from lambda_dpo.data.commands import add_data_parser
from lambda_dpo.verifiable.commands import add_verifiable_actions


COMMAND_GROUP = "lambda_dpo.commands"  # entry points that add subcommands (search/ adds schedule and sweep)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command: the library's own, then those other packages register under
    :data:`COMMAND_GROUP` (so this package never imports the λ search that builds on it)."""
    from importlib.metadata import entry_points

    parser = argparse.ArgumentParser(prog="lambda-dpo", description="λ-DPO fine-tuning and λ search over the preference simplex")
    parser.add_argument("--version", action="version", version=f"lambda-dpo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_verifiable_actions(add_data_parser(subparsers))
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
    except Exception as error:
        message = user_error_message(error)
        if message is None:  # not bad input: the traceback is the user's best lead
            if is_out_of_memory(error):
                print(f"lambda-dpo {args.command}: out of memory: {OUT_OF_MEMORY_HINT}", file=sys.stderr)
            raise
        # Bad input is the user's to fix: say what is wrong without a traceback.
        print(f"lambda-dpo {args.command}: error: {message}", file=sys.stderr)
        return 2


OUT_OF_MEMORY_HINT = ("lower optim.batch_size (and raise optim.gradient_accumulation to keep the batch), set "
                      "model.gradient_checkpointing=true, train a LoRA adapter (model.lora.enabled=true), or shorten data.max_length")
OWN_PACKAGES = ("lambda_dpo", "search")


def raised_by_us(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in this project's packages: our own
    checks raise ValueError/RuntimeError with a message meant for the user; the same types raised
    deep in a library (torch, scikit-learn) are bugs or resource failures that need their traceback."""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    module = trace.tb_frame.f_globals.get("__name__", "") if trace is not None else ""
    return module.split(".")[0] in OWN_PACKAGES


def user_error_message(error: BaseException) -> str | None:
    """The one line to print for an error the user can fix, or None for one that needs a traceback."""
    if isinstance(error, OSError) and error.filename is not None and not isinstance(error, (ConnectionError, TimeoutError)):
        return f"{error.filename}: {error.strerror}"  # a path the user gave: missing, a directory, not writable
    if isinstance(error, (ValueError, FileNotFoundError, FileExistsError, RuntimeError)) and raised_by_us(error):
        return str(error)
    return None


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(error).lower()


if __name__ == "__main__":
    sys.exit(main())
