"""The tabular landscape: real tiny-model λ-DPO fine-tunes on the simplex grid, stored as a CSV.

Each grid point λ is one fine-tune of the sweep's base config (`configs/sweep/tiny.yaml` by
default: the same model, data, steps and objective as `make demo`), trained with that fixed λ and
scored by the sweep's objective (held-out top-1 accuracy against the centroid-mixed target). The
search-efficiency benchmark interpolates these values linearly inside the grid's simplices.

Computed once (about 2 min per point on one CPU thread) and committed; rerunning continues where
it stopped (points already in the CSV are skipped), so an interrupted run loses one fine-tune at
most.

    python benchmarks/tabular_landscape.py                                  # resolution 4: 35 points
    python benchmarks/tabular_landscape.py --resolution 2 --out /tmp/x.csv  # 10 points
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from lambda_dpo.train import train
from search.lambda_scheduler import simplex_grid
from search.sweep_config import load_sweep_config, trial_train_config

DEFAULT_OUT = Path(__file__).parent / "data" / "tiny_landscape.csv"


def done_points(path: Path, dimensions: list[str]) -> set[tuple[float, ...]]:
    if not path.exists():
        return set()
    with path.open() as handle:
        return {tuple(round(float(row[f"lambda/{d}"]), 6) for d in dimensions) for row in csv.DictReader(handle)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep-config", default="configs/sweep/tiny.yaml")
    parser.add_argument("--resolution", type=int, default=4, help="grid step 1/resolution")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("overrides", nargs="*", help="dotted overrides of the sweep config, e.g. train.optim.max_steps=50")
    args = parser.parse_args(argv)

    config = load_sweep_config(args.sweep_config, args.overrides)
    dimensions = config.dimensions
    metric_names = [config.objective] + [f"top1_accuracy/{d}" for d in dimensions]
    grid = simplex_grid(len(dimensions), args.resolution)
    done = done_points(args.out, dimensions)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = [f"lambda/{d}" for d in dimensions] + ["objective"] + metric_names[1:] + ["seed", "steps", "seconds"]
    fresh = not args.out.exists()
    with args.out.open("a", newline="") as handle, tempfile.TemporaryDirectory(prefix="landscape-") as scratch:
        writer = csv.writer(handle)
        if fresh:
            writer.writerow(header)
        config.output_dir = scratch
        for index, weights in enumerate(grid):
            if tuple(round(float(w), 6) for w in weights) in done:
                continue
            start = time.perf_counter()
            result = train(trial_train_config(config, weights, f"grid-{index:03d}"))
            seconds = time.perf_counter() - start
            values = [result.metrics[name] for name in metric_names]
            writer.writerow([f"{w:.6g}" for w in weights] + [f"{v:.6f}" for v in values] + [config.train.seed, config.train.optim.max_steps, f"{seconds:.0f}"])
            handle.flush()
            shutil.rmtree(result.run_dir, ignore_errors=True)
            print(f"[{index + 1}/{len(grid)}] λ={np.round(weights, 3).tolist()} {config.objective}={values[0]:.4f} ({seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
