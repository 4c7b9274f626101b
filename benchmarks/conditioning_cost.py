"""What λ conditioning costs at the centroid, and what it buys, over several seeds.

For each seed it trains two models from one config (`configs/train/tiny-conditioned.yaml` by
default), each in its own process:

- **conditioned**: the config as it is (λ in the prompt, sampled per example);
- **unconditioned**: the same config trained with the centroid λ and no preamble
  (`conditioning=none lambdas.sampler=fixed lambdas.weights=[1/m, ...] lambdas.anchor_share=0`).

It then scores both on the held-out split at the centroid (`top1_accuracy/mixed`, the mixed
target of λ = 1/m) and the conditioned model's steerability (`lambda-dpo evaluate --steerability`),
and prints per seed: both accuracies, the cost (unconditioned − conditioned) and the
steerability, then the mean cost and its standard error over seeds.

Each run logs its training metrics to `metrics.jsonl` in its directory, and each finished model
leaves `result.json` there; a rerun reuses it, so an interrupted benchmark loses at most the runs
in progress.

    python benchmarks/conditioning_cost.py --seeds 0 1 2            # ≈ 15 min per seed on 2 cores
    python benchmarks/conditioning_cost.py --seeds 0 1 lambdas.anchor_share=0   # another setting
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from lambda_dpo.reporting import JsonlReporter
from lambda_dpo.checkpoint_eval import checkpoint_evaluator, steerability_of
from lambda_dpo.train import train
from lambda_dpo.train_config import load_train_config

VARIANTS = ("conditioned", "unconditioned")
MIXED = "top1_accuracy/mixed"


def variant_overrides(variant: str, num_dimensions: int) -> list[str]:
    """What turns the conditioned config into the unconditioned baseline (nothing for itself)."""
    if variant == "conditioned":
        return []
    centroid = ",".join([f"{1 / num_dimensions:.17g}"] * num_dimensions)
    return ["conditioning=none", "lambdas.sampler=fixed", f"lambdas.weights=[{centroid}]", "lambdas.anchor_share=0"]


def run_variant(config_path: str, overrides: list[str], run_dir: Path, variant: str, seed: int) -> dict:
    """Train one model (or reuse its ``result.json``) and score it at the centroid.

    overrides: the user's, then the variant's; the seed, run directory and evaluation are added.
    """
    from transformers.utils import logging as hf_logging

    result_path = run_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    hf_logging.disable_progress_bar()
    full = [*overrides, f"seed={seed}", f"output_dir={run_dir}", "eval.every=0"]
    config = load_train_config(config_path, full)
    start = time.perf_counter()
    reporter = JsonlReporter(run_dir / "metrics.jsonl")  # to follow a run: tail its metrics.jsonl
    try:
        trained = train(config, reporter=reporter)
    finally:
        reporter.close()
    result = {"variant": variant, "seed": seed, "overrides": full, "checkpoint": str(trained.checkpoint),
              "centroid_accuracy": trained.metrics[MIXED], "train_seconds": time.perf_counter() - start}
    if variant == "conditioned":
        steer = steerability_of(checkpoint_evaluator(trained.checkpoint), config.data.dimensions)
        result |= {"steerability": steer.score, "steerability_matrix": steer.accuracy.tolist()}
    result_path.write_text(json.dumps(result, indent=2))
    return result


def cost_table(results: dict[tuple[int, str], dict], seeds: list[int]) -> tuple[list[str], np.ndarray]:
    """Printable lines (one per seed, then the mean) and the per-seed costs."""
    lines = [f"{'seed':>6} {'conditioned':>12} {'unconditioned':>14} {'cost':>7} {'steerability':>13}"]
    costs = []
    for seed in seeds:
        conditioned, unconditioned = results[seed, "conditioned"], results[seed, "unconditioned"]
        cost = unconditioned["centroid_accuracy"] - conditioned["centroid_accuracy"]
        costs.append(cost)
        lines.append(f"{seed:>6} {conditioned['centroid_accuracy']:>12.3f} {unconditioned['centroid_accuracy']:>14.3f} {cost:>7.3f} {conditioned['steerability']:>13.3f}")
    costs = np.array(costs)
    steer = np.mean([results[seed, "conditioned"]["steerability"] for seed in seeds])
    spread = f"cost ± {costs.std(ddof=1) / np.sqrt(len(costs)):.3f} standard error over {len(seeds)} seeds" if len(costs) > 1 else "one seed: no standard error"
    lines.append(f"{'mean':>6} {'':>12} {'':>14} {costs.mean():>7.3f} {steer:>13.3f}   ({spread})")
    return lines, costs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/train/tiny-conditioned.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/conditioning-cost"), help="one directory per seed and variant")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at once (each on the config's `threads`)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides of the config for both variants, e.g. optim.max_steps=4000")
    args = parser.parse_args(argv)
    num_dimensions = len(load_train_config(args.config, args.overrides).data.dimensions)  # a bad key fails here, before anything trains

    jobs = [(seed, variant) for variant in VARIANTS for seed in args.seeds]  # the longer conditioned runs first
    results = {}
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = {
            pool.submit(run_variant, args.config, [*args.overrides, *variant_overrides(variant, num_dimensions)], args.out / f"seed-{seed}" / variant, variant, seed): (seed, variant)
            for seed, variant in jobs
        }
        for done, future in enumerate(as_completed(futures), 1):
            seed, variant = futures[future]
            results[seed, variant] = result = future.result()
            print(f"[{done}/{len(jobs)} {time.perf_counter() - start:.0f} s] seed {seed} {variant}: {MIXED} at the centroid {result['centroid_accuracy']:.3f}", flush=True)
    lines, _ = cost_table(results, args.seeds)
    print("\n".join(lines))
    (args.out / "summary.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
