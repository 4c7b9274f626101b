"""The method's claims on a real model: λ matters, λ-DPO against DPO, and steering by λ.

Every run is one LoRA fine-tune of the real-model config (`configs/train/smollm2-135m-verifiable.yaml`:
SmolLM2-135M-Instruct, the shipped verifiable set, 30 steps) with the same data, steps and
hyperparameters; only what the list below names changes. Each is scored by what it generates on the
held-out prompts (`verifiable/<dim>`, `verifiable/mixed`) and by the held-out ranking metrics.

- ``reference``: the untrained model (generation only: its implicit reward is zero);
- ``lambda-dpo-s<seed>``: λ-DPO at the centroid λ; ``dpo-s<seed>``: DPO on each prompt's best and
  worst response under the centroid's mixed target (``--seeds``, at least 3 for the claim);
- ``simpo``, ``orpo``: the reference-free baselines on the same pairs;
- ``one-hot-<dim>``: λ-DPO at λ = e_k, one per dimension;
- ``steer-mix``, ``steer-numbers``: λ-DPO with ``conditioning: prompt`` (λ ~ Dir(1) per example,
  rendered into the prompt with and without the 20-word mix), generated under every e_k and the centroid.

Resumable: each finished run leaves ``result.json`` (and its generations) in its directory and is
never trained again; a run cut off mid-way starts over. All runs share one reference log-prob cache.
The results are committed (``benchmarks/results/real-model-claims``; checkpoints and tokenizers are
git-ignored), so a fresh clone continues where the last machine stopped.
The report (``summary.md``, ``summary.json``, ``one_hot.png``, ``trade_off.png``) is rewritten from
whatever has finished, so it can be read while the rest runs. ``observations.csv`` holds the fixed-λ
λ-DPO runs as ``(λ, objective)`` rows: the real-model sweep starts from them (``searcher.warm_start``).

    python benchmarks/real_model_claims.py                   # 10–15 min per run on 2 cores
    python benchmarks/real_model_claims.py --report-only     # the report from the finished runs
    python benchmarks/real_model_claims.py --only simpo orpo # these runs only (still resumable)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CONFIG = "configs/train/smollm2-135m-verifiable.yaml"
MIXED = "verifiable/mixed"
HELD_OUT = ("top1_accuracy/mixed", "reward_margin")  # the held-out ranking metrics shown beside the generation scores
RESULT = "result.json"
OBSERVATIONS = "observations.csv"  # the fixed-λ λ-DPO runs, in the form a sweep's searcher.warm_start reads
GENERATIONS = "generations.jsonl"  # the final evaluation's (train.GENERATIONS); a steered run adds generations-<dim>.jsonl
RANKING_STEERABILITY = "steerability.json"  # a steered run's, by held-out ranking: what `lambda-dpo evaluate --steerability` writes


@dataclass(frozen=True)
class Run:
    name: str
    arm: str  # the table's row: runs of one arm differ in seed only
    overrides: tuple[str, ...] = ()
    steered: bool = False  # conditioning: prompt, generated under every vertex too
    seed: int = 0


@dataclass
class Finished:
    """A finished run's result and its per-prompt generation rows, by the λ they were generated under
    ("centroid", or a dimension's name for a steered run's e_k)."""

    run: Run
    result: dict
    rows: dict[str, list[dict]] = field(default_factory=dict)


def centroid(m: int) -> str:
    return "[" + ",".join([f"{1 / m:.17g}"] * m) + "]"


def plan(dimensions: list[str], seeds: list[int]) -> list[Run]:
    """Every run, in the order they are started: the first seed's pair, the one-hot runs, the other
    seeds, the steered runs, then the reference-free baselines (so that each claim is readable as
    early as it can be)."""
    m = len(dimensions)
    fixed = lambda weights: ("lambdas.sampler=fixed", f"lambdas.weights={weights}", "lambdas.anchor_share=0")  # noqa: E731
    pair = lambda seed: [Run(f"lambda-dpo-s{seed}", "λ-DPO, centroid", ("loss.name=lambda_dpo", *fixed(centroid(m))), seed=seed),  # noqa: E731
                         Run(f"dpo-s{seed}", "DPO, centroid", ("loss.name=dpo", *fixed(centroid(m))), seed=seed)]
    one_hot = [Run(f"one-hot-{name}", f"one-hot {name}", ("loss.name=lambda_dpo", *fixed("[" + ",".join("1" if j == k else "0" for j in range(m)) + "]")))
               for k, name in enumerate(dimensions)]
    baselines = [Run(name, name.upper().replace("SIMPO", "SimPO"), (f"loss.name={name}", *fixed(centroid(m)))) for name in ("simpo", "orpo")]
    steer = [Run(f"steer-{kind}", f"steered ({kind})", ("loss.name=lambda_dpo", "conditioning=prompt", f"preamble={preamble}",
                                                         "lambdas.sampler=dirichlet", "lambdas.dirichlet_alpha=1", "lambdas.anchor_share=0"), steered=True)
             for kind, preamble in (("mix", "numbers+mix"), ("numbers", "numbers"))]
    first, *rest = seeds
    return [*pair(first), *one_hot, *[run for seed in rest for run in pair(seed)], *steer, *baselines]


# ----------------------------------------------------------------------------- running


def execute(run: Run, config_path: str, overrides: list[str], out: Path) -> dict:
    """Train one run (or read back its result) and generate under every vertex when it is steered."""
    from lambda_dpo.reporting import JsonlReporter
    from lambda_dpo.checkpoint_eval import checkpoint_generations, write_rows
    from lambda_dpo.train import train
    from lambda_dpo.train_config import load_train_config

    run_dir = out / run.name
    if (run_dir / RESULT).exists():
        result = json.loads((run_dir / RESULT).read_text())
        if run.steered and not (run_dir / RANKING_STEERABILITY).exists():  # finished before the benchmark measured it
            write_ranking_steerability(out / result["checkpoint"], run_dir)
        return result | {"read_back": True}
    if run_dir.exists():  # cut off mid-way: its 30 steps are cheaper to redo than to resume
        shutil.rmtree(run_dir)
    full = [*run.overrides, *overrides, f"seed={run.seed}", f"output_dir={run_dir}", f"reference_cache={out / 'reference_logps'}",
            "save_every=0", "eval.every=0"]
    config = load_train_config(config_path, full)
    started = time.perf_counter()
    reporter = JsonlReporter(run_dir / "metrics.jsonl")  # to follow a run: tail its metrics.jsonl
    try:
        trained = train(config, reporter=reporter)
    finally:
        reporter.close()
    result = {"name": run.name, "arm": run.arm, "seed": run.seed, "overrides": full, "checkpoint": str(trained.checkpoint.relative_to(out)),
              "metrics": trained.metrics, "train_seconds": time.perf_counter() - started}
    if run.steered:
        vertex_metrics = {}
        for k, name in enumerate(config.data.dimensions):
            weights = [1.0 if j == k else 0.0 for j in range(len(config.data.dimensions))]
            scores = checkpoint_generations(trained.checkpoint, weights=weights)
            write_rows(run_dir / f"generations-{name}.jsonl", scores.rows)
            vertex_metrics[name] = scores.metrics
        result["vertex_metrics"] = vertex_metrics
        write_ranking_steerability(trained.checkpoint, run_dir)
    result["seconds"] = time.perf_counter() - started
    (run_dir / RESULT).write_text(json.dumps(result, indent=2))
    return result


def write_ranking_steerability(checkpoint: Path, run_dir: Path) -> None:
    """A steered checkpoint's held-out top-1 accuracy per dimension under each vertex λ given in its
    prompt, as ``lambda-dpo evaluate --steerability`` reports it: does its implicit reward read λ,
    even where its greedy answers do not follow it."""
    from lambda_dpo.checkpoint_eval import checkpoint_evaluator, load_checkpoint_config, steerability_of

    result = steerability_of(checkpoint_evaluator(checkpoint), load_checkpoint_config(checkpoint).data.dimensions)
    (run_dir / RANKING_STEERABILITY).write_text(json.dumps({"checkpoint": str(checkpoint), **result.as_json()}, indent=2))


def execute_reference(checkpoint: Path, out: Path) -> dict:
    """The untrained model's generations (plain prompts) on the same held-out prompts."""
    from lambda_dpo.checkpoint_eval import checkpoint_generations, write_rows

    run_dir = out / "reference"
    if (run_dir / RESULT).exists():
        return json.loads((run_dir / RESULT).read_text()) | {"read_back": True}
    started = time.perf_counter()
    scores = checkpoint_generations(checkpoint, reference=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_rows(run_dir / GENERATIONS, scores.rows)
    result = {"name": "reference", "arm": "reference (untrained)", "seed": 0, "metrics": scores.metrics, "seconds": time.perf_counter() - started}
    (run_dir / RESULT).write_text(json.dumps(result, indent=2))
    return result


def run_all(runs: list[Run], args, dimensions: list[str]) -> None:
    """Every run in turn (or those ``--only`` names), the untrained model's generations second (they
    need the first run's checkpoint to find the data and model). One at a time on the config's threads: two runs side by side on one thread
    each were slower in all (the reference's generation took 14.6 min against 2 min 56 s alone)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the log is a file: one line per run, no weight-loading bars
    started = time.perf_counter()
    failures = []
    jobs = [(run.name, lambda run=run: execute(run, args.config, args.overrides, args.out)) for run in runs]
    jobs.insert(1, ("reference", lambda: execute_reference(args.out / json.loads((args.out / runs[0].name / RESULT).read_text())["checkpoint"], args.out)))
    if args.only:  # the others keep their place in the count, so that [k/n] means the same in every log
        jobs = [(name, job) if name in args.only else (name, None) for name, job in jobs]
    for done, (name, job) in enumerate(jobs, 1):
        if job is None:
            continue
        try:
            result = job()
        except Exception as error:  # the others go on; a rerun retries this one
            failures.append(name)
            print(f"[{done}/{len(jobs)}] {name} FAILED: {type(error).__name__}: {error}", flush=True)
            continue
        took = "finished earlier" if result.get("read_back") else f"{result['seconds'] / 60:.1f} min"
        score = result["metrics"].get(MIXED, math.nan)
        print(f"[{done}/{len(jobs)} {(time.perf_counter() - started) / 60:.0f} min] {name}: {MIXED} {score:.3f} ({took})", flush=True)
        try:
            report(args.out, runs, dimensions, args.signal)
        except Exception as error:  # a report bug must not stop the runs; --report-only redoes it
            print(f"the report could not be written ({type(error).__name__}: {error})", flush=True)
    if failures:
        raise SystemExit(f"{len(failures)} runs failed ({', '.join(failures)}); rerun the same command to retry them")


# ----------------------------------------------------------------------------- the report


def load_finished(out: Path, runs: list[Run]) -> tuple[dict[str, Finished], Finished | None]:
    from lambda_dpo.commands import read_rows  # checks every row is a generation score row

    finished = {}
    for run in runs:
        run_dir = out / run.name
        if not (run_dir / RESULT).exists():
            continue
        rows = {"centroid": read_rows(run_dir / GENERATIONS)}
        for path in run_dir.glob("generations-*.jsonl"):
            rows[path.stem.removeprefix("generations-")] = read_rows(path)
        result = json.loads((run_dir / RESULT).read_text())
        if (run_dir / RANKING_STEERABILITY).exists():
            result["ranking_steerability"] = json.loads((run_dir / RANKING_STEERABILITY).read_text())
        finished[run.name] = Finished(run, result, rows)
    reference = None
    if (out / "reference" / RESULT).exists():
        reference = Finished(Run("reference", "reference (untrained)"), json.loads((out / "reference" / RESULT).read_text()),
                             {"centroid": read_rows(out / "reference" / GENERATIONS)})
    return finished, reference


def prompt_means(runs: list[Finished], metric: str, tag: str = "centroid") -> dict[str, float]:
    """Per prompt (record id): ``metric`` averaged over ``runs`` (seeds of one arm), prompts where it applies."""
    from lambda_dpo.verifiable.scoring import metric_values

    values: dict[str, list[float]] = {}
    for finished in runs:
        rows = finished.rows[tag]
        for row, value in zip(rows, metric_values(rows, metric)):
            if value is not None:
                values.setdefault(row["record_id"], []).append(value)
    return {key: float(np.mean(v)) for key, v in values.items() if len(v) == len(runs)}


def interval(values, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile bootstrap interval over prompts."""
    from lambda_dpo.verifiable.scoring import bootstrap_interval

    values = list(values)
    low, high = bootstrap_interval(values, seed=seed)
    return (float(np.mean(values)) if values else math.nan), low, high


def paired(first: dict[str, float], second: dict[str, float]) -> tuple[float, float, float, int]:
    """Mean of first − second over their common prompts, its bootstrap interval and the prompt count."""
    keys = sorted(set(first) & set(second))
    mean, low, high = interval([first[k] - second[k] for k in keys])
    return mean, low, high, len(keys)


def fmt(mean: float, low: float, high: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{mean:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def score_matrix(rows_by_row: list[dict[str, list[dict]]], dimensions: list[str], tags: list[str]) -> np.ndarray:
    """``[len(tags), m]``: row i = the runs under tag i, column k = mean ``verifiable/<dim k>``."""
    from lambda_dpo.verifiable.scoring import summarise

    return np.array([[summarise(rows[tag], dimensions)[f"verifiable/{d}"] for d in dimensions] for rows, tag in zip(rows_by_row, tags)])


def arms_table(finished: dict[str, Finished], reference: Finished | None, dimensions: list[str]) -> tuple[list[str], dict]:
    """One line per arm: each generation score with its interval over prompts (seeds averaged per
    prompt), then the held-out ranking metrics (mean over seeds)."""
    arms: dict[str, list[Finished]] = {}
    for item in ([reference] if reference else []) + list(finished.values()):
        arms.setdefault(item.run.arm, []).append(item)
    metrics = [MIXED, *(f"verifiable/{d}" for d in dimensions)]
    header = ("| run | seeds | " + " | ".join(f"`{m}`" for m in metrics) + " | Δ mixed vs untrained (paired) | "
              + " | ".join(f"`{m}`" for m in HELD_OUT) + " | words | minutes |")
    lines = [header, "|" + " --- |" * (len(metrics) + len(HELD_OUT) + 5)]
    data = {}
    floor = prompt_means([reference], MIXED) if reference else None
    for arm, items in arms.items():
        cells = {metric: interval(prompt_means(items, metric).values()) for metric in metrics}
        gain = paired(prompt_means(items, MIXED), floor)[:3] if floor and not arm.startswith("reference") else None
        held = {name: float(np.mean([i.result["metrics"].get(name, math.nan) for i in items])) for name in HELD_OUT}
        if arm.startswith("reference"):
            held = {name: math.nan for name in HELD_OUT}  # its implicit reward is zero: no ranking
        words = float(np.mean([i.result["metrics"]["generation/mean_words"] for i in items]))
        minutes = float(np.mean([i.result["seconds"] for i in items])) / 60
        seeds = ", ".join(str(i.run.seed) for i in items)
        lines.append(f"| {arm} | {seeds} | " + " | ".join(fmt(*cells[m]) for m in metrics) + f" | {fmt(*gain, signed=True) if gain else '—'} | "
                     + " | ".join("—" if math.isnan(held[n]) else f"{held[n]:.3f}" for n in HELD_OUT) + f" | {words:.0f} | {minutes:.1f} |")
        data[arm] = {"seeds": [i.run.seed for i in items], "scores": {m: cells[m] for m in metrics}, "gain_over_untrained": gain, "held_out": held,
                     "mean_words": words, "minutes": minutes}
    return lines, data


def matrix_lines(label: str, rows: list[str], dimensions: list[str], matrix: np.ndarray, *, mark_best: bool = False) -> list[str]:
    """A markdown table of ``matrix`` (rows × dimensions); ``mark_best`` bolds each column's highest value."""
    best = matrix.argmax(axis=0)
    cell = lambda i, j: f"**{matrix[i, j]:.3f}**" if mark_best and best[j] == i else f"{matrix[i, j]:.3f}"  # noqa: E731
    return [f"| {label} | " + " | ".join(dimensions) + " |", "|" + " --- |" * (len(dimensions) + 1),
            *(f"| {row} | " + " | ".join(cell(i, j) for j in range(len(dimensions))) + " |" for i, row in enumerate(rows))]


def one_hot_claim(finished: dict[str, Finished], dimensions: list[str], signal: dict[str, int] | None = None) -> tuple[list[str], dict | None]:
    """Is each one-hot run the best of them on its own dimension, by generation; and, to tell the
    data from the method when it is not, by the held-out ranking (``reward_accuracy/<dim>``), with
    ``signal``: how many training prompts each dimension can rank at all."""
    from lambda_dpo.conditioning import steerability

    names = [f"one-hot-{d}" for d in dimensions]
    if not all(n in finished for n in names):
        return [f"λ matters: waiting for the one-hot runs ({sum(n in finished for n in names)}/{len(names)} finished)"], None
    matrix = score_matrix([finished[n].rows for n in names], dimensions, ["centroid"] * len(names))
    ranking = np.array([[finished[n].result["metrics"][f"reward_accuracy/{d}"] for d in dimensions] for n in names])
    wins = [d for k, d in enumerate(dimensions) if matrix.argmax(axis=0)[k] == k]
    ranking_wins = [d for k, d in enumerate(dimensions) if ranking.argmax(axis=0)[k] == k]
    rows = [f"e({d})" for d in dimensions]
    margins = {}
    for k, d in enumerate(dimensions):  # own run against the best of the other three, paired by prompt
        runner_up = max((j for j in range(len(dimensions)) if j != k), key=lambda j: matrix[j, k])
        metric = f"verifiable/{d}"
        margins[d] = [*paired(prompt_means([finished[names[k]]], metric), prompt_means([finished[names[runner_up]]], metric))[:3], dimensions[runner_up]]
    lines = ["Generation scores under each one-hot λ (row: the λ trained at; column: `verifiable/<dim>`; bold: the column's best):", "",
             *matrix_lines("trained at", rows, dimensions, matrix, mark_best=True), "",
             f"Each one-hot run is the best of the four on its own dimension's generation score in {len(wins)} of {len(dimensions)} dimensions ({', '.join(wins) or 'none'}).",
             "Its margin over the best of the other three, paired by prompt: "
             + "; ".join(f"{d} {fmt(*margins[d][:3], signed=True)} (against e({margins[d][3]}))" for d in dimensions) + ".",
             "", "The same runs on the held-out ranking (`reward_accuracy/<dim>`: the share of rated pairs the implicit reward orders right):", "",
             *matrix_lines("trained at", rows, dimensions, ranking, mark_best=True), "",
             f"By ranking, in {len(ranking_wins)} of {len(dimensions)} ({', '.join(ranking_wins) or 'none'})."]
    if signal:
        lines += ["", "Training prompts whose responses' ratings differ in the dimension (all a one-hot λ can learn from): "
                  + ", ".join(f"{d} {signal[d]}" for d in dimensions) + "."]
    return lines, {"matrix": matrix.tolist(), "wins": wins, "margins": margins, "steerability": steerability(matrix), "ranking": ranking.tolist(),
                   "ranking_wins": ranking_wins, "training_signal": signal}


def pair_claim(finished: dict[str, Finished]) -> tuple[list[str], dict | None]:
    lam = [f for f in finished.values() if f.run.arm == "λ-DPO, centroid"]
    dpo = [f for f in finished.values() if f.run.arm == "DPO, centroid"]
    seeds = sorted({f.run.seed for f in lam} & {f.run.seed for f in dpo})
    if not seeds:
        return ["λ-DPO against DPO: waiting for a seed with both runs"], None
    lam = [f for f in lam if f.run.seed in seeds]
    dpo = [f for f in dpo if f.run.seed in seeds]
    mean, low, high, count = paired(prompt_means(lam, MIXED), prompt_means(dpo, MIXED))
    per_seed = [paired(prompt_means([a], MIXED), prompt_means([b], MIXED))[0] for a, b in zip(sorted(lam, key=lambda f: f.run.seed), sorted(dpo, key=lambda f: f.run.seed))]
    lines = [f"λ-DPO − DPO in `{MIXED}` at the centroid, seeds {seeds} averaged per prompt, paired over {count} prompts: {fmt(mean, low, high, signed=True)}.",
             "Per seed: " + ", ".join(f"{s}: {d:+.3f}" for s, d in zip(seeds, per_seed)) + "."]
    return lines, {"seeds": seeds, "difference": [mean, low, high], "prompts": count, "per_seed": per_seed}


def score_tensor(row_sets: list[list[dict]], dimensions: list[str], keys: list[str]) -> np.ndarray:
    """``[len(row_sets), len(keys), m]``: each prompt's ``verifiable/<dim>`` under each row set, NaN where it does not apply."""
    tensor = np.full((len(row_sets), len(keys), len(dimensions)), np.nan)
    for i, rows in enumerate(row_sets):
        by_key = {row["record_id"]: row for row in rows}
        for p, key in enumerate(keys):
            scores = by_key[key]["scores"]
            tensor[i, p] = [np.nan if scores.get(d) is None else scores[d] for d in dimensions]
    return tensor


def steerability_draws(tensor: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Steerability of ``tensor`` ``[m, prompts, m]`` (row: the λ given or trained at) under each resample of
    prompts in ``draws`` ``[B, prompts]``: ``[B]``. Two tensors under the same draws are paired by prompt."""
    from lambda_dpo.conditioning import steerability

    matrices = np.nanmean(tensor[:, draws, :], axis=2)  # [m, B, m]
    return np.array([steerability(matrices[:, b, :]) for b in range(len(draws))])


def steerability_intervals(steered: Finished, one_hot: list[Finished], dimensions: list[str], resamples: int = 2000, seed: int = 0) -> dict:
    """The steered run's steerability on generation scores (rows: it given each e_k), the one-hot runs'
    (rows: trained at each e_k) and their ratio, each with a 95% percentile bootstrap interval over
    prompts, the same resample for both so that the ratio is paired by prompt."""
    from lambda_dpo.conditioning import steerability

    row_sets = {"steered": [steered.rows[d] for d in dimensions], "one_hot": [run.rows["centroid"] for run in one_hot]}
    keys = sorted(set.intersection(*({row["record_id"] for row in rows} for sets in row_sets.values() for rows in sets)))
    tensors = {name: score_tensor(sets, dimensions, keys) for name, sets in row_sets.items()}
    draws = np.random.default_rng(seed).integers(0, len(keys), (resamples, len(keys)))
    estimate = {name: steerability(np.nanmean(tensor, axis=1)) for name, tensor in tensors.items()}
    sampled = {name: steerability_draws(tensor, draws) for name, tensor in tensors.items()}
    estimate["ratio"] = estimate["steered"] / estimate["one_hot"] if estimate["one_hot"] else math.nan
    sampled["ratio"] = sampled["steered"] / sampled["one_hot"]
    bounds = lambda values: [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]  # noqa: E731
    return {name: [estimate[name], *bounds(sampled[name])] for name in ("steered", "one_hot", "ratio")} | {"prompts": len(keys)}


def ranking_steerability_lines(ranking: dict, one_hot_runs: list[Finished], dimensions: list[str], entry: dict) -> list[str]:
    """The steered run's steerability by held-out ranking (``steerability.json``) against the one-hot
    runs' on the same metric (``top1_accuracy/<dim>``); adds both to ``entry``."""
    from lambda_dpo.conditioning import steerability

    matrix = np.array(ranking["accuracy"])
    entry["ranking"] = {"matrix": matrix.tolist(), "steerability": ranking["steerability"]}
    lines = ["", "By held-out ranking (`top1_accuracy/<dim>` under each e_k given, as `lambda-dpo evaluate --steerability` reports it):", "",
             *matrix_lines("λ given", [f"e({d})" for d in dimensions], dimensions, matrix), "",
             f"Steerability by ranking: {ranking['steerability']:+.3f}"]
    if one_hot_runs:
        trained = np.array([[run.result["metrics"][f"top1_accuracy/{d}"] for d in dimensions] for run in one_hot_runs])
        entry["ranking"]["one_hot_steerability"] = score = steerability(trained)
        lines[-1] += f"; the four one-hot models' on the same metric: {score:+.3f}"
    return lines


def steering_claim(finished: dict[str, Finished], dimensions: list[str], one_hot: dict | None) -> tuple[list[str], dict]:
    lines, data = [], {}
    unconditioned = [f for f in finished.values() if f.run.arm == "λ-DPO, centroid"]
    one_hot_runs = [finished[f"one-hot-{d}"] for d in dimensions] if one_hot is not None else []
    for name in ("steer-mix", "steer-numbers"):
        if name not in finished:
            lines.append(f"{name}: not finished")
            continue
        item = finished[name]
        given = [*dimensions, "centroid"]
        matrix = score_matrix([item.rows] * len(given), dimensions, given)
        entry = {"matrix": matrix[: len(dimensions)].tolist(), "centroid_row": matrix[-1].tolist()}
        lines += [f"**{name}** (`preamble: {'numbers+mix' if name.endswith('mix') else 'numbers'}`): generation scores under each λ given at inference"
                  " (the last row, the centroid, is not part of the steerability):", "",
                  *matrix_lines("λ given", [*(f"e({d})" for d in dimensions), "centroid"], dimensions, matrix), ""]
        if one_hot_runs:
            bounds = steerability_intervals(item, one_hot_runs, dimensions)
            entry |= {"steerability": bounds["steered"][0], "steerability_interval": bounds["steered"][1:],
                      "one_hot_steerability": bounds["one_hot"], "ratio": bounds["ratio"][0], "ratio_interval": bounds["ratio"][1:]}
            lines.append(f"Steerability on generation scores: {fmt(*bounds['steered'], signed=True)}; the four one-hot models': "
                         f"{fmt(*bounds['one_hot'], signed=True)}; ratio {fmt(*bounds['ratio'])} (target ≥ 0.6; intervals: "
                         f"the same bootstrap resamples of the {bounds['prompts']} prompts for both)")
        else:
            from lambda_dpo.conditioning import steerability

            entry["steerability"] = steerability(matrix[: len(dimensions)])
            lines.append(f"Steerability on generation scores: {entry['steerability']:+.3f} (the one-hot runs are not finished: no ratio)")
        if "ranking_steerability" in item.result:
            lines += ranking_steerability_lines(item.result["ranking_steerability"], one_hot_runs, dimensions, entry)
        if unconditioned:
            mean, low, high, count = paired(prompt_means(unconditioned, MIXED), prompt_means([item], MIXED))
            entry["centroid_cost"] = [mean, low, high]
            lines.append(f"Cost at the centroid (unconditioned λ-DPO − {name} in `{MIXED}`, {count} prompts): {fmt(mean, low, high, signed=True)} (target ≤ 0.03)")
        lines.append("")
        data[name] = entry
    return lines, data


def plots(out: Path, finished: dict[str, Finished], reference: Finished | None, dimensions: list[str], one_hot: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if one_hot is not None:
        figure, axis = plt.subplots(figsize=(6.5, 4.5))
        matrix = np.array(one_hot["matrix"])
        image = axis.imshow(matrix, cmap="viridis")
        axis.set_xticks(range(len(dimensions)), dimensions, rotation=20)
        axis.set_yticks(range(len(dimensions)), [f"λ = e({d})" for d in dimensions])
        for i in range(len(dimensions)):
            for j in range(len(dimensions)):
                axis.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color="white" if matrix[i, j] < matrix.mean() else "black")
        axis.set_title("verifiable/<dim> of greedy answers, per one-hot λ run")
        figure.colorbar(image, ax=axis)
        figure.tight_layout()
        figure.savefig(out / "one_hot.png", dpi=120)
        plt.close(figure)
    pairs = [(0, 2), (2, 3)] if len(dimensions) >= 4 else [(0, 1)]
    figure, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 5))
    items = ([reference] if reference else []) + list(finished.values())
    for axis, (x, y) in zip(np.atleast_1d(axes), pairs):
        for item in items:
            scores = score_matrix([item.rows], dimensions, ["centroid"])[0]
            axis.scatter(scores[x], scores[y], s=30)
            axis.annotate(item.run.name, (scores[x], scores[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        axis.set_xlabel(f"verifiable/{dimensions[x]}")
        axis.set_ylabel(f"verifiable/{dimensions[y]}")
    figure.suptitle("One point per run (greedy answers, centroid prompt for steered runs)")
    figure.tight_layout()
    figure.savefig(out / "trade_off.png", dpi=120)
    plt.close(figure)


def fixed_lambda(run: Run) -> list[float] | None:
    """The λ a λ-DPO run trains at for every example, None for the other losses and the steered runs."""
    overrides = dict(item.split("=", 1) for item in run.overrides)
    if overrides.get("loss.name") != "lambda_dpo" or overrides.get("lambdas.sampler") != "fixed":
        return None
    return [float(w) for w in json.loads(overrides["lambdas.weights"])]


def observations(finished: dict[str, Finished], dimensions: list[str]) -> list[dict]:
    """The fixed-λ λ-DPO runs as a sweep's observations (run, seed, ``lambda/<dim>``, ``objective`` =
    ``verifiable/mixed``): each is what a trial of the real-model sweep computes at its λ, so
    ``observations.csv`` is that sweep's ``searcher.warm_start``."""
    rows = []
    for item in finished.values():
        weights = fixed_lambda(item.run)
        if weights is not None:
            rows.append({"run": item.run.name, "seed": item.run.seed, **{f"lambda/{d}": w for d, w in zip(dimensions, weights)},
                         "objective": item.result["metrics"][MIXED]})
    return rows


def training_signal(config_path: str, overrides: list[str]) -> dict[str, int]:
    """Per dimension, the training prompts with at least two different ratings in it."""
    from lambda_dpo.run_setup import load_datasets
    from lambda_dpo.train_config import load_train_config

    config = load_train_config(config_path, overrides)
    train_examples, _ = load_datasets(config)
    differ = lambda ratings: len(set(ratings[~np.isnan(ratings)].tolist())) >= 2  # noqa: E731
    return {d: sum(differ(e.ratings[k]) for e in train_examples) for k, d in enumerate(config.data.dimensions)}


def report(out: Path, runs: list[Run], dimensions: list[str], signal: dict[str, int] | None = None) -> str:
    """``summary.md`` (the tables and the three claims), ``summary.json`` and the PNGs, from the runs finished so far."""
    finished, reference = load_finished(out, runs)
    if not finished:
        return "no run has finished yet"
    table, arms = arms_table(finished, reference, dimensions)
    hot_lines, one_hot = one_hot_claim(finished, dimensions, signal)
    pair_lines, pair = pair_claim(finished)
    steer_lines, steer = steering_claim(finished, dimensions, one_hot)
    text = "\n".join([f"# The claims on SmolLM2-135M-Instruct ({len(finished) + bool(reference)}/{len(runs) + 1} runs finished)", "",
                      "Means over the held-out prompts with 95% bootstrap intervals; arms with several seeds are averaged per prompt first.", "",
                      *table, "", "## λ matters", "", *hot_lines, "", "## λ-DPO against DPO", "", *pair_lines, "", "## Steering", "", *steer_lines])
    (out / "summary.md").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps({"arms": arms, "one_hot": one_hot, "pair": pair, "steering": steer}, indent=2))
    columns = ["run", "seed", *(f"lambda/{d}" for d in dimensions), "objective"]
    pd.DataFrame(observations(finished, dimensions), columns=columns).to_csv(out / OBSERVATIONS, index=False)
    plots(out, finished, reference, dimensions, one_hot)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the centroid pair (λ-DPO and DPO)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real-model-claims"),
                        help="one directory per run; the default is in the repository, so a fresh clone resumes from the committed results")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the finished runs; train nothing")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="train only these runs (names as in the report: lambda-dpo-s2, simpo, steer-mix, reference, ...); the report still reads every finished run")
    parser.add_argument("overrides", nargs="*", help="dotted overrides of the config for every run (the smoke test cuts the data with them)")
    args = parser.parse_args(argv)
    from lambda_dpo.train_config import load_train_config

    dimensions = list(load_train_config(args.config, args.overrides).data.dimensions)  # a bad key fails here, before anything trains
    runs = plan(dimensions, args.seeds)
    names = ["reference", *(run.name for run in runs)]
    if unknown := sorted(set(args.only or ()) - set(names)):
        parser.error(f"--only: no run named {', '.join(unknown)}; the runs are {', '.join(names)}")
    args.signal = training_signal(args.config, args.overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        run_all(runs, args, dimensions)
    print(report(args.out, runs, dimensions, args.signal))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
