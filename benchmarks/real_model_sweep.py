"""The real-model λ sweep, read back: its best λ against the centroid, and how well its scheduler predicts.

Reads a finished run of ``configs/sweep/smollm2-135m-verifiable.yaml`` (whose ``searcher.warm_start``
is the claims benchmark's ``observations.csv``: the four vertices and the centroid at three seeds),
and writes ``summary.md`` / ``summary.json``:

- the best row (a trial of the sweep or a warm-start run) against the centroid runs, paired by
  prompt on ``verifiable/mixed`` with a 95% bootstrap interval over prompts (the centroid's seeds
  averaged per prompt first). The best of many noisy scores is biased upwards, so the interval says
  how far the best is from the centroid on these prompts, not that a rerun would keep the gap;
- the scheduler refitted on every row as the sweep fitted it: its predicted best λ, and its
  leave-one-out RMSE against predicting each row by the mean of the others.

``--ship DIR`` also copies the sweep, with each trial's config, evaluation, generations and metrics
(no checkpoints), to ``DIR``: the second example sweep the notebooks read.

    lambda-dpo sweep configs/sweep/smollm2-135m-verifiable.yaml       # about 2 h on 2 cores
    python benchmarks/real_model_sweep.py --ship search/examples/smollm2-verifiable-sweep
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from real_model_claims import GENERATIONS, MIXED, Finished, Run, fmt, paired, prompt_means

SWEEP = Path("runs/sweeps/smollm2-verifiable")
OUT = Path("benchmarks/results/real-model-sweep")
SWEEP_FILES = ("sweep.yaml", "results.csv", "schedule.json", "schedule.png", "objective.png")
TRIAL_FILES = ("config.yaml", "eval.json", GENERATIONS, "metrics.jsonl")


def ship(sweep_dir: Path, target: Path) -> None:
    """The sweep's outputs and each trial's small files, without checkpoints or tokenizers."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in SWEEP_FILES:
        if (sweep_dir / name).is_file():
            shutil.copy2(sweep_dir / name, target / name)
    for trial in sorted((sweep_dir / "runs").iterdir()):
        for name in TRIAL_FILES:
            if (trial / name).is_file():
                (target / "runs" / trial.name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(trial / name, target / "runs" / trial.name / name)


def generation_rows(results, row: pd.Series, warm_start_runs: dict[str, Path]) -> Finished:
    """A row's greedy answers: a trial's ``runs/<id>/generations.jsonl``, or the warm-start run's."""
    from lambda_dpo.commands import read_rows

    directory = warm_start_runs.get(row["trial_id"]) or results.directory / "runs" / row["trial_id"]
    return Finished(Run(row["trial_id"], row["trial_id"]), {}, {"centroid": read_rows(directory / GENERATIONS)})


def warm_start_directories(results) -> dict[str, Path]:
    """``warm-start-k`` → the claims run that produced it (the ``run`` column of ``observations.csv``,
    whose directories sit next to it), in the order the sweep read the finite rows."""
    path = Path(results.config.searcher.warm_start or "")
    if not path.is_file():
        return {}
    table = pd.read_csv(path)
    finite = table[np.isfinite(pd.to_numeric(table["objective"], errors="coerce"))]
    return {f"warm-start-{k}": path.parent / run for k, run in enumerate(finite["run"])}


def summarise(results) -> tuple[list[str], dict]:
    from search.analysis import centroid_rows
    from search.lambda_scheduler import leave_one_out_error

    dims, table = results.dimensions, results.table
    columns = [f"lambda/{d}" for d in dims]
    warm = warm_start_directories(results)
    best, own_best = results.best(), results.best(ran_here=True)
    centroids = centroid_rows(results.config, table)
    centroids = centroids[np.isfinite(centroids["objective"].astype(float))]
    lam = lambda row: "(" + ", ".join(f"{float(row[c]):.3f}" for c in columns) + ")"  # noqa: E731
    lines = [f"# The real-model λ sweep ({results.directory})", "",
             f"{len(results.own_trials())} trials and {len(table) - len(results.own_trials())} warm-start rows; objective `{results.config.objective}`; "
             f"λ = ({', '.join(dims)}).", ""]
    data: dict = {"trials": len(results.own_trials()), "rows": len(table)}
    if len(centroids):
        centroid_means = prompt_means([generation_rows(results, row, warm) for _, row in centroids.iterrows()], MIXED)
        for label, row in (("best row", best), ("best trial of the sweep itself", own_best)):
            gap = paired(prompt_means([generation_rows(results, row, warm)], MIXED), centroid_means)
            lines.append(f"- {label}: {row['trial_id']} at λ = {lam(row)}, `{MIXED}` {float(row['objective']):.4f}; against the centroid "
                         f"({len(centroids)} runs, mean {centroids['objective'].astype(float).mean():.4f}), paired over {gap[3]} prompts: {fmt(*gap[:3], signed=True)}")
            data[label] = {"trial_id": row["trial_id"], "lambda": [float(row[c]) for c in columns], "objective": float(row["objective"]),
                           "minus_centroid": list(gap[:3]), "prompts": gap[3]}
    scheduler, left_out = results.fit(), results.leave_one_out()
    error, yardstick = leave_one_out_error(left_out["objective"], left_out["predicted"])
    candidate = scheduler.best_candidate()
    lines += [f"- the scheduler refitted on all {len(scheduler.observed_scores_)} rows ({scheduler.basis} degree {scheduler.degree_}, {scheduler.regression}): "
              f"predicted best λ = ({', '.join(f'{w:.3f}' for w in candidate)}), predicted {float(scheduler.predict(candidate)[0]):.4f}",
              f"- its leave-one-out RMSE {error:.4f}, against {yardstick:.4f} for predicting each row by the mean of the others "
              f"(objective spread: std {float(np.std(scheduler.observed_scores_)):.4f})", "",
              "| row | status | " + " | ".join(dims) + f" | `{MIXED}` | left-out prediction |", "|" + " --- |" * (len(dims) + 4)]
    left_out = left_out.set_index("trial_id")["predicted"]
    for _, row in table.iterrows():
        predicted = f"{left_out[row['trial_id']]:.4f}" if row["trial_id"] in left_out.index else "—"
        lines.append(f"| {row['trial_id']} | {row['status']} | " + " | ".join(f"{float(row[c]):.3f}" for c in columns) + f" | {float(row['objective']):.4f} | {predicted} |")
    data["scheduler"] = {"predicted_best_lambda": candidate.tolist(), "predicted_best": float(scheduler.predict(candidate)[0]),
                         "leave_one_out_rmse": error, "others_mean_rmse": yardstick}
    return lines, data


def main(argv=None) -> int:
    from search.analysis import load_sweep

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=Path, default=SWEEP, help="the finished sweep directory")
    parser.add_argument("--out", type=Path, default=OUT, help="where summary.md and summary.json go")
    parser.add_argument("--ship", type=Path, help="copy the sweep here as an example (replacing what is there)")
    args = parser.parse_args(argv)
    results = load_sweep(args.sweep)
    lines, data = summarise(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    (args.out / "summary.json").write_text(json.dumps(data, indent=2))
    if args.ship:
        ship(args.sweep, args.ship)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
