"""``lambda-dpo data build-verifiable``: sample a model, rate its responses by rule, report the set."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from lambda_dpo.console import make_console
from lambda_dpo.data.commands import command_check
from lambda_dpo.verifiable.build import BuildSettings, build_verifiable, solve_rates
from lambda_dpo.verifiable.prompts import RECIPES
from lambda_dpo.verifiable.verifiers import VERIFIABLE_DIMENSIONS


def command_build_verifiable(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    console = make_console()
    settings = BuildSettings(
        model=args.model, num_prompts=args.num_prompts, seed=args.seed, recipe=args.recipe, responses=args.responses, prompts_per_batch=args.prompts_per_batch,
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, threads=args.threads,
    )
    out = Path(args.out)
    columns = (TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TextColumn("batches"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("sampling", total=None)
        records = build_verifiable(settings, out, on_batch=lambda done, total: progress.update(task, completed=done, total=total))
    console.print(f"{settings.num_prompts} prompts × {settings.responses} responses written to {out}")
    console.print(solve_rate_table(records))
    check = argparse.Namespace(source=str(out), dimensions=",".join(VERIFIABLE_DIMENSIONS), format="listwise", split="train", on_bad_record="raise", limit=None, rating_scale="1,5")
    return command_check(check)


def solve_rate_table(records) -> Table:
    table = Table(title="correctness by prompt family: the model's own samples")
    for column in ("family", "prompts", "responses", "rated right"):
        table.add_column(column, justify="left" if column == "family" else "right")
    for family, (prompts, responses, right) in solve_rates(records).items():
        table.add_row(family, str(prompts), str(responses), f"{right:.0%}")
    return table


def add_verifiable_actions(actions) -> None:
    """``build-verifiable`` under ``lambda-dpo data``."""
    defaults = BuildSettings()
    build = actions.add_parser(
        "build-verifiable",
        help="sample responses from a model and rate them by rule (instruction following, correctness, conciseness, detail)",
    )
    build.add_argument("--out", required=True, help="output .jsonl file (listwise, with each prompt's verification); resumes OUT.partial")
    build.add_argument("--model", default=defaults.model, help="model to sample from: a registered name, directory or hub id")
    build.add_argument("--recipe", choices=RECIPES, default=defaults.recipe, help="which prompts (docs/verifiable.md): v1 as the first shipped set, v2 with calculations and facts")
    build.add_argument("--num-prompts", type=int, default=defaults.num_prompts)
    build.add_argument("--seed", type=int, default=defaults.seed)
    build.add_argument("--responses", type=int, default=defaults.responses, help="samples per prompt")
    build.add_argument("--prompts-per-batch", type=int, default=defaults.prompts_per_batch)
    build.add_argument("--temperature", type=float, default=defaults.temperature)
    build.add_argument("--top-p", type=float, default=defaults.top_p)
    build.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    build.add_argument("--threads", type=int, default=defaults.threads, help="torch threads (the samples depend on it)")
    build.set_defaults(handler=command_build_verifiable)
