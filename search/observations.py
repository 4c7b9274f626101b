"""Observations from CSV: the ``(λ, score)`` rows that ``schedule fit --observations`` and a
sweep's ``searcher.warm_start`` read (a sweep's ``results.csv`` is one such table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lambda_dpo.console import make_console

LAMBDA_PREFIX = "lambda/"


def _column_for(dimension: str, columns: list[str]) -> str | None:
    for name in (dimension, LAMBDA_PREFIX + dimension):
        if name in columns:
            return name
    return None


def read_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable CSV table ({str(error).strip().splitlines()[0]})") from None


def lambda_columns(table: pd.DataFrame, path, dimensions: list[str] | None, *, exclude: tuple[str, ...] = ()) -> tuple[list[str], np.ndarray]:
    """λ columns of a table: the named dimensions (``dim`` or ``lambda/dim``), else every
    ``lambda/*`` column, else every column not excluded. Errors name the file and columns."""
    columns = list(table.columns)
    if dimensions:
        missing = [d for d in dimensions if _column_for(d, columns) is None]
        if missing:
            raise ValueError(f"{path}: no column for dimension(s) {missing}; columns are {columns}")
        names = [_column_for(d, columns) for d in dimensions]
    else:
        names = [c for c in columns if c.startswith(LAMBDA_PREFIX)] or [c for c in columns if c not in exclude]
        dimensions = [c.removeprefix(LAMBDA_PREFIX) for c in names]
    if len(names) < 2:
        raise ValueError(f"{path}: need at least two λ columns, found {names} (columns are {columns})")
    for name in names:
        if not pd.api.types.is_numeric_dtype(table[name]):
            raise ValueError(f"{path}: column {name!r} is not numeric")
    return list(dimensions), table[names].to_numpy(dtype=float)


def read_observations(path: str | Path, score: str, dimensions: list[str] | None, *, announce: bool = True) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(dimensions, lambdas [n, d], scores [n])`` from an observations CSV; rows without a finite
    score (a sweep's errored or interrupted trials) are left out, and said so when ``announce``."""
    table = read_csv(path)
    if score not in table.columns:
        raise ValueError(f"{path}: no score column {score!r} (set --score); columns are {list(table.columns)}")
    dimensions, lambdas = lambda_columns(table, path, dimensions, exclude=(score,))
    scores = pd.to_numeric(table[score], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(scores)
    if announce and not finite.all():
        make_console().print(f"{path}: {int((~finite).sum())} of {len(scores)} rows have no finite {score} and are left out")
    return dimensions, lambdas[finite], scores[finite]
