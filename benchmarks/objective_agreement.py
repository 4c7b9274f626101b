"""Does the cheap objective rank runs as the expensive one does? Spearman ρ, across trained runs,
between the held-out ranking metric ``top1_accuracy/mixed`` (no generation: seconds) and the
generation score ``verifiable/mixed`` (minutes per run).

Every ``eval.json`` under the given directories is one trained run (the untrained reference has
none). Runs are grouped by their data (``data.source`` in the ``config.yaml`` beside it), and ρ
is reported per group and over all of them, with a 95% bootstrap interval over runs.

    python benchmarks/objective_agreement.py benchmarks/results/real-model-claims search/examples/smollm2-verifiable-sweep \\
        benchmarks/results/real-model-claims-v2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CHEAP, EXPENSIVE = "top1_accuracy/mixed", "verifiable/mixed"


def trained_runs(roots) -> list[dict]:
    """``{"run", "data", CHEAP, EXPENSIVE}`` of every run under ``roots`` whose evaluation has both."""
    import yaml

    found = []
    for root in roots:
        for path in sorted(Path(root).rglob("eval.json")):
            metrics = json.loads(path.read_text()).get("metrics", {})
            if CHEAP in metrics and EXPENSIVE in metrics:
                config = yaml.safe_load((path.parent / "config.yaml").read_text())
                found.append({"run": str(path.parent), "data": Path(config["data"]["source"]).name, CHEAP: metrics[CHEAP], EXPENSIVE: metrics[EXPENSIVE]})
    return found


def spearman_interval(cheap, expensive, *, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """ρ and its percentile bootstrap interval over runs (resamples with a constant column dropped)."""
    from scipy.stats import spearmanr

    cheap, expensive = np.asarray(cheap, float), np.asarray(expensive, float)
    rho = float(spearmanr(cheap, expensive)[0])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(len(cheap), size=len(cheap))
        if np.ptp(cheap[pick]) > 0 and np.ptp(expensive[pick]) > 0:
            draws.append(spearmanr(cheap[pick], expensive[pick])[0])
    low, high = np.percentile(draws, [2.5, 97.5])
    return rho, float(low), float(high)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", help="directories holding run directories (each with eval.json and config.yaml)")
    args = parser.parse_args(argv)
    runs = trained_runs(args.roots)
    groups = {data: [r for r in runs if r["data"] == data] for data in sorted({r["data"] for r in runs})}
    if len(groups) > 1:
        groups["all"] = runs
    print(f"| data | runs | Spearman ρ ({CHEAP} vs {EXPENSIVE}) | 95% interval |")
    print("| --- | ---: | ---: | --- |")
    for data, members in groups.items():
        if len(members) < 4:
            print(f"| {data} | {len(members)} | (too few runs) | |")
            continue
        rho, low, high = spearman_interval([r[CHEAP] for r in members], [r[EXPENSIVE] for r in members])
        print(f"| {data} | {len(members)} | {rho:+.2f} | [{low:+.2f}, {high:+.2f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
