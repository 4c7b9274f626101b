"""Tune our searcher's scheduler settings on the search-efficiency landscapes.

Each setting (``LambdaSchedulerSettings`` overrides) runs ours on every landscape over *tuning* seeds
(1000 onwards by default: the reported table uses seeds 0–29, so the defaults are not fitted to
the seeds they are judged on). Random Dirichlet and Optuna TPE run once on the same seeds as
the yardsticks. Prints, per setting, the median regret at 20 trials on each landscape and two
summaries: the geometric mean of ours/random over the landscapes, and on how many landscapes
(multimodal excepted) ours is at most half of random.

    python benchmarks/tune_scheduler.py                           # the built-in grid below
    python benchmarks/tune_scheduler.py "temperature=5" "temperature=5 regression=bayesian"
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from search_efficiency import KINDS, TARGET_TRIALS, LandscapeSpec, SearchTask, parse_overrides, run_all, summarise  # noqa: E402

GRID = [
    "",
    "temperature=1",
    "temperature=10",
    "regression=bayesian kappa=1",
    "regression=lstsq",
    "basis=scheffe",
    "degree=3 alpha=0.01",
    "local_candidates=1000",
    "local_candidates=1000 temperature=10",
    "local_candidates=1000 local_concentration=200",
]


def evaluate(settings: list[str], seeds: range, jobs: int, kinds=KINDS, at: int = TARGET_TRIALS, concurrency: int = 1, yardsticks=("random", "optuna-tpe")) -> pd.DataFrame:
    """Median regret after ``at`` trials: a row per setting of ours, then one per yardstick searcher."""
    specs = [LandscapeSpec(kind, m, noisy) for m in (3, 4) for kind in kinds for noisy in (False, True)]
    rows = []
    baselines = [SearchTask(spec, name, seed, at, {}, concurrency) for spec in specs for name in yardsticks for seed in seeds]
    ours = [SearchTask(spec, "ours", seed, at, parse_overrides(text.split()), concurrency) for text in settings for spec in specs for seed in seeds]
    runs = run_all(baselines + ours, jobs)
    runs["setting"] = [""] * len(baselines) + [text for text in settings for _ in specs for _ in seeds]
    for setting, group in runs[runs["searcher"] == "ours"].groupby("setting", sort=False):
        medians = summarise(group, budgets=(at,)).set_index("landscape")["median"]
        rows.append(medians.rename(setting or "(defaults)"))
    for name in yardsticks:
        rows.append(summarise(runs[runs["searcher"] == name], budgets=(at,)).set_index("landscape")["median"].rename(name))
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="*", default=GRID, help='each one string of KEY=VALUE pairs ("" = the defaults)')
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--concurrency", type=int, default=1, help="trials per round (search_efficiency.py --concurrency)")
    parser.add_argument("--yardsticks", nargs="+", default=["random", "optuna-tpe"], choices=["random", "optuna-tpe", "optuna-gp"])
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    table = evaluate(args.settings, seeds, args.jobs, args.kinds, concurrency=args.concurrency, yardsticks=args.yardsticks)
    random = table.loc["random"]
    ratio = table / random
    not_multimodal = [c for c in table.columns if not c.startswith("multimodal")]
    table["geomean/random"] = np.exp(np.log(ratio.clip(lower=1e-4)).mean(axis=1))
    table["≤½ random"] = (ratio[not_multimodal] <= 0.5).sum(axis=1).astype(str) + f"/{len(not_multimodal)}"
    pd.set_option("display.width", 250, "display.max_columns", 40)
    print(table.T.to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
