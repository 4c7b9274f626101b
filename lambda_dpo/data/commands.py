"""``lambda-dpo data check``: load a dataset the way training will and report what it holds."""

from __future__ import annotations


import numpy as np
from lambda_dpo.console import make_console
from rich.table import Table

from lambda_dpo.data.loading import FORMATS, ON_BAD_RECORD, load_examples
from lambda_dpo.data.records import DEFAULT_DIMENSIONS
from lambda_dpo.lambdas import parse_numbers
from lambda_dpo.preferences import MIN_RATED_RESPONSES


def command_check(args) -> int:
    console = make_console()
    dimensions = args.dimensions.split(",") if args.dimensions else list(DEFAULT_DIMENSIONS)
    with console.status(f"loading {args.source}"):
        examples, report = load_examples(
            args.source, dimensions=dimensions, format=args.format, split=args.split, on_bad_record=args.on_bad_record, limit=args.limit,
            rating_scale=parse_numbers(args.rating_scale, name="--rating-scale") if args.rating_scale is not None else None,
        )
    console.print(report.summary())
    counts = np.bincount([e.num_responses for e in examples])
    console.print("responses per prompt: " + ", ".join(f"{n}: {c}" for n, c in enumerate(counts) if c))
    table = Table(title="ratings per dimension")
    for column in ("dimension", "rated", "N/A", "prompts usable (≥2 rated)", "prompts whose ratings differ", "mean rating"):
        table.add_column(column, justify="right" if column != "dimension" else "left")
    for row, dimension in enumerate(dimensions):
        values = np.concatenate([e.ratings[row] for e in examples])
        rated = ~np.isnan(values)
        usable = sum((~np.isnan(e.ratings[row])).sum() >= MIN_RATED_RESPONSES for e in examples)
        differ = ratings_differ(examples, row)
        mean = f"{values[rated].mean():.2f}" if rated.any() else "-"
        table.add_row(dimension, str(rated.sum()), str((~rated).sum()), f"{usable} / {len(examples)}", f"{differ} ({differ / len(examples):.0%})", mean)
    console.print(table)
    if len(dimensions) > 1:
        console.print(correlation_table(examples, dimensions))
    return 0


def ratings_differ(examples, dimension: int) -> int:
    """Prompts with two rated responses whose ratings in ``dimension`` differ: the prompts that
    dimension can teach anything on."""
    return sum(np.ptp(rated) > 0 for rated in (e.ratings[dimension][~np.isnan(e.ratings[dimension])] for e in examples) if len(rated) >= MIN_RATED_RESPONSES)


def rating_correlations(examples, dimensions) -> np.ndarray:
    """``[m, m]`` Spearman ρ between dimensions over the responses rated in both (NaN where fewer than 3)."""
    from scipy.stats import spearmanr

    ratings = np.concatenate([e.ratings for e in examples], axis=1)  # [m, all responses]
    m = len(dimensions)
    rho = np.full((m, m), np.nan)
    for i in range(m):
        for j in range(m):
            both = ~np.isnan(ratings[i]) & ~np.isnan(ratings[j])
            if both.sum() >= 3 and np.ptp(ratings[i, both]) > 0 and np.ptp(ratings[j, both]) > 0:
                rho[i, j] = spearmanr(ratings[i, both], ratings[j, both]).statistic
    return rho


def correlation_table(examples, dimensions) -> Table:
    rho = rating_correlations(examples, dimensions)
    table = Table(title="Spearman correlation between dimensions (responses rated in both)")
    table.add_column("")
    for dimension in dimensions:
        table.add_column(dimension, justify="right")
    for dimension, row in zip(dimensions, rho):
        table.add_row(dimension, *("-" if np.isnan(value) else f"{value:+.2f}" for value in row))
    return table


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


def add_data_parser(subparsers):
    """The ``data`` command; returns its actions, to which lambda_dpo.verifiable adds ``build-verifiable``."""
    data = subparsers.add_parser("data", help="inspect preference data")
    actions = data.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="load a dataset as training would and report records, skips and rating coverage")
    check.add_argument("source", help="hub dataset name, or a local .json/.jsonl/.parquet file or directory")
    check.add_argument("--format", choices=FORMATS, default="auto")
    check.add_argument("--split", default="train")
    check.add_argument("--dimensions", help=f"comma-separated (default: {','.join(DEFAULT_DIMENSIONS)})")
    check.add_argument("--on-bad-record", choices=ON_BAD_RECORD, default="raise")
    check.add_argument("--limit", type=int)
    check.add_argument("--rating-scale", metavar="LOW,HIGH", help="every rating must lie in [LOW, HIGH] (default: UltraFeedback 1,5; listwise any finite number)")
    check.set_defaults(handler=command_check)
    synthesize = actions.add_parser("synthesize", help="write the embedded synthetic dataset (UltraFeedback schema) as JSONL")
    synthesize.add_argument("--num-prompts", type=int, default=4000)
    synthesize.add_argument("--seed", type=int, default=0)
    synthesize.add_argument("--out", required=True, help="output .jsonl file")
    synthesize.set_defaults(handler=command_synthesize)
    return actions
