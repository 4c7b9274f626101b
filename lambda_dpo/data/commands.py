"""``lambda-dpo data check``: load a dataset the way training will and report what it holds."""

from __future__ import annotations

import numpy as np
from lambda_dpo.console import make_console
from rich.table import Table

from lambda_dpo.data.loading import FORMATS, ON_BAD_RECORD, load_examples
from lambda_dpo.data.records import DEFAULT_DIMENSIONS
from lambda_dpo.preferences import MIN_RATED_RESPONSES


def command_check(args) -> int:
    console = make_console()
    dimensions = args.dimensions.split(",") if args.dimensions else list(DEFAULT_DIMENSIONS)
    with console.status(f"loading {args.source}"):
        examples, report = load_examples(
            args.source, dimensions=dimensions, format=args.format, split=args.split, on_bad_record=args.on_bad_record, limit=args.limit
        )
    console.print(report.summary())
    counts = np.bincount([e.num_responses for e in examples])
    console.print("responses per prompt: " + ", ".join(f"{n}: {c}" for n, c in enumerate(counts) if c))
    table = Table(title="ratings per dimension")
    for column in ("dimension", "rated", "N/A", "prompts usable (≥2 rated)", "mean rating"):
        table.add_column(column, justify="right" if column != "dimension" else "left")
    for row, dimension in enumerate(dimensions):
        values = np.concatenate([e.ratings[row] for e in examples])
        rated = ~np.isnan(values)
        usable = sum((~np.isnan(e.ratings[row])).sum() >= MIN_RATED_RESPONSES for e in examples)
        mean = f"{values[rated].mean():.2f}" if rated.any() else "-"
        table.add_row(dimension, str(rated.sum()), str((~rated).sum()), f"{usable} / {len(examples)}", mean)
    console.print(table)
    return 0


def command_synthesize(args) -> int:
    import json
    from pathlib import Path

    from lambda_dpo.data.synthetic import synthetic_records

    records = synthetic_records(args.num_prompts, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(record) + "\n" for record in records))
    make_console().print(f"{len(records)} synthetic UltraFeedback-schema records written to {out} (seed {args.seed})")
    return 0


def add_data_parser(subparsers) -> None:
    data = subparsers.add_parser("data", help="inspect preference data")
    actions = data.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="load a dataset as training would and report records, skips and rating coverage")
    check.add_argument("source", help="hub dataset name, or a local .json/.jsonl/.parquet file or directory")
    check.add_argument("--format", choices=FORMATS, default="auto")
    check.add_argument("--split", default="train")
    check.add_argument("--dimensions", help=f"comma-separated (default: {','.join(DEFAULT_DIMENSIONS)})")
    check.add_argument("--on-bad-record", choices=ON_BAD_RECORD, default="raise")
    check.add_argument("--limit", type=int)
    check.set_defaults(handler=command_check)
    synthesize = actions.add_parser("synthesize", help="write the embedded synthetic dataset (UltraFeedback schema) as JSONL")
    synthesize.add_argument("--num-prompts", type=int, default=4000)
    synthesize.add_argument("--seed", type=int, default=0)
    synthesize.add_argument("--out", required=True, help="output .jsonl file")
    synthesize.set_defaults(handler=command_synthesize)
