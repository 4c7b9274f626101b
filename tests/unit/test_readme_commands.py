"""Every `lambda-dpo …` command quoted in the README and docs/ still parses, and every train or
sweep command with a config passes --dry-run: the documentation cannot drift from the CLI."""

import re
import shlex
from pathlib import Path

import pytest

from lambda_dpo.cli import build_parser, main

DOCUMENTS = [Path("README.md"), *sorted(Path("docs").glob("*.md")), Path("benchmarks/README.md"), Path("cluster/README.md")]
PROGRAM = re.compile(r"^(?:\$ )?(?:\S*/)?lambda-dpo\s")
OPTIONAL = re.compile(r"\s\[[^\]]*\]")  # `[key=value ...]`, `[--data SOURCE]`: optional parts written as in a usage line


def quoted_commands() -> list[tuple[str, str]]:
    """(where, command line) for each `lambda-dpo` line in a fenced code block, continuation lines joined."""
    found = []
    for document in DOCUMENTS:
        fenced, pending = False, ""
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), start=1):
            if line.lstrip().startswith("```"):
                fenced, pending = not fenced, ""
                continue
            if not fenced:
                continue
            text = pending + line.strip()
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            if PROGRAM.match(text):
                found.append((f"{document}:{number}", text))
    return found


def argv_of(command: str) -> list[str]:
    command = re.sub(r"\s+#.*$", "", command)  # a trailing comment
    command = OPTIONAL.sub("", command)
    return shlex.split(command)[1:]


COMMANDS = quoted_commands()


def test_the_documents_quote_commands():
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_quoted_command_parses_and_a_config_passes_dry_run(where, command, tmp_path, capsys):
    argv = argv_of(command)
    args, extra = build_parser().parse_known_args(argv)  # an unknown subcommand or a bad flag exits here
    assert all("=" in item and not item.startswith("-") for item in extra), f"{where}: unrecognised {extra}"
    if args.command in ("train", "sweep") and getattr(args, "config", None) and not args.resume:
        own = [f"output_dir={tmp_path / 'out'}"] + ([f"storage_path={tmp_path / 'ray'}"] if args.command == "sweep" else [])  # not this clone's runs/
        assert main([*argv, *own, "--dry-run"]) == 0, f"{where}: {capsys.readouterr().err}"
