"""Search efficiency: how fast each searcher finds a good λ, trial by trial, without Ray.

Searchers (each driven through the same ``suggest`` / ``on_trial_complete`` calls Tune makes):
ours (``PolynomialLambdaSearcher`` with the sweep's default ``LambdaSchedulerSettings``), Optuna TPE and
Optuna GP (``optuna_searcher``, as ``searcher.name: optuna`` builds them), random Dirichlet
(``RandomLambdaSearcher``) and the centroid alone (one trial, never improved on).

Landscapes over the simplex, m = 3 and 4, each with and without observation noise:
  smooth      a concave quadratic −(λ−λ*)ᵀA(λ−λ*), A random SPD, λ* ~ Dir(1.5)
  sharp       a cusp exp(−‖λ−λ*‖₂ / 0.1), λ* ~ Dir(1.5)
  multimodal  three Gaussian bumps (σ 0.1) of heights 1, 0.7, 0.5 at centres ~ Dir(1)
  tabular     real tiny-model fine-tunes on the simplex grid (``benchmarks/data/tiny_landscape.csv``,
              made by ``tabular_landscape.py``), interpolated linearly; m = 3 is its face with the
              last dimension at 0
Every landscape is rescaled to [0, 1] over the simplex, so regret is a fraction of its range;
noise is N(0, 0.05²) on that scale. A new random instance is drawn for every seed.

Simple regret after t trials = f* − f(λ̂_t), where λ̂_t is the trial with the best *observed*
score among the first t (what a user would pick), and f is the noise-free landscape.

Concurrency C (``--concurrency``): trials run in rounds of C, every λ of a round suggested before
any of them reports, as on a cluster where C trials run at once (C = 1: one after another).

    python benchmarks/search_efficiency.py                        # the full table, C = 1, 4, 8, 30 seeds
    python benchmarks/search_efficiency.py --seeds 5 --searchers ours random --concurrency 4
    python benchmarks/search_efficiency.py --scheduler temperature=5 regression=bayesian
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator
from scipy.optimize import minimize

HERE = Path(__file__).parent
TABLE = HERE / "data" / "tiny_landscape.csv"
RESULTS = HERE / "results"
KINDS = ("smooth", "sharp", "multimodal", "tabular")
SEARCHERS = ("ours", "optuna-tpe", "optuna-gp", "random", "centroid")
BUDGETS = (5, 10, 20, 40)
TARGET_TRIALS = 20  # the budget the targets are judged at (benchmarks/README.md)
CONCURRENCY = (1, 4, 8)
NOISE_SD = 0.05


# ----------------------------------------------------------------------------- landscapes


@dataclass(frozen=True)
class LandscapeSpec:
    kind: str
    m: int
    noisy: bool

    @property
    def name(self) -> str:
        return f"{self.kind} m={self.m}{' +noise' if self.noisy else ''}"


def quadratic(rng, m):
    optimum = rng.dirichlet(np.full(m, 1.5))
    basis, _ = np.linalg.qr(rng.normal(size=(m, m)))
    curvature = basis @ np.diag(rng.uniform(0.5, 2.0, m)) @ basis.T
    return lambda x: -np.einsum("ni,ij,nj->n", x - optimum, curvature, x - optimum), [optimum]


def cusp(rng, m, width=0.1):
    optimum = rng.dirichlet(np.full(m, 1.5))
    return lambda x: np.exp(-np.linalg.norm(x - optimum, axis=1) / width), [optimum]


def bumps(rng, m, width=0.1, heights=(1.0, 0.7, 0.5)):
    centres = rng.dirichlet(np.ones(m), size=len(heights))
    heights = np.asarray(heights)

    def f(x):
        squared = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        return (heights * np.exp(-squared / (2 * width**2))).sum(-1)

    return f, list(centres)


def tabular(m, path=TABLE):
    table = pd.read_csv(path)
    columns = [c for c in table.columns if c.startswith("lambda/")]
    if m < len(columns):  # the face where the dropped dimensions weigh nothing
        table = table[(table[columns[m:]] == 0).all(axis=1)]
        columns = columns[:m]
    points, values = table[columns].to_numpy(float), table["objective"].to_numpy(float)
    linear = LinearNDInterpolator(points[:, :-1], values)  # λ_m = 1 − Σ the others
    nearest = NearestNDInterpolator(points[:, :-1], values)

    def f(x):
        inside = linear(x[:, :-1])
        return np.where(np.isnan(inside), nearest(x[:, :-1]), inside)  # round-off just outside the hull

    return f, list(points)


def reference_points(rng, m) -> np.ndarray:
    """Dense cover of the simplex, its centre and its faces, for the range and the optimum."""
    from search.lambda_scheduler import simplex_grid

    return np.vstack([rng.dirichlet(np.ones(m), 20000), rng.dirichlet(np.full(m, 0.3), 20000), simplex_grid(m, 12)])


def refine_maximum(f, start: np.ndarray) -> tuple[np.ndarray, float]:
    """Local maximum of f on the simplex from ``start`` (SLSQP with the simplex as constraints)."""
    result = minimize(
        lambda x: -f(x[None])[0], start, method="SLSQP", bounds=[(0, 1)] * len(start),
        constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
    )
    x = np.clip(result.x, 0, None)
    x /= x.sum()
    return x, float(f(x[None])[0])


@dataclass
class Landscape:
    """f rescaled to [0, 1] over the simplex (f* = 1), plus its noise."""

    spec: LandscapeSpec
    raw: object
    low: float
    high: float
    optimum: np.ndarray  # where f = 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (self.raw(np.atleast_2d(x)) - self.low) / (self.high - self.low)


def make_landscape(spec: LandscapeSpec, seed: int) -> Landscape:
    rng = np.random.default_rng([seed, KINDS.index(spec.kind), spec.m])
    raw, known = tabular(spec.m) if spec.kind == "tabular" else {"smooth": quadratic, "sharp": cusp, "multimodal": bumps}[spec.kind](rng, spec.m)
    cover = np.vstack([reference_points(rng, spec.m), np.asarray(known)])
    values = raw(cover)
    optimum, high = cover[np.argmax(values)], values.max()
    if spec.kind != "tabular":  # piecewise linear peaks at a grid point; the others are refined
        for start in cover[np.argsort(values)[-3:]]:
            point, value = refine_maximum(raw, start)
            if value > high:
                optimum, high = point, value
    return Landscape(spec, raw, float(values.min()), float(high), optimum)


# ----------------------------------------------------------------------------- searchers


def build_searcher(name: str, dimensions: list[str], seed: int, budget: int, scheduler_overrides: dict):
    from search.searcher import PolynomialLambdaSearcher, RandomLambdaSearcher, optuna_searcher
    from search.lambda_scheduler import LambdaSchedulerSettings

    common = dict(metric="objective", mode="max", num_trials=budget, random_state=seed)
    if name == "ours":
        return PolynomialLambdaSearcher(dimensions, lambda_scheduler=LambdaSchedulerSettings(**scheduler_overrides).build(), **common)
    if name == "random":
        return RandomLambdaSearcher(dimensions, **common)
    if name == "centroid":
        return RandomLambdaSearcher(dimensions, **dict(common, num_trials=1), initial_points=[np.full(len(dimensions), 1 / len(dimensions))])
    return optuna_searcher(dimensions, metric="objective", mode="max", sampler=name.removeprefix("optuna-"), seed=seed)


class SearchTask(NamedTuple):
    spec: LandscapeSpec
    searcher: str
    seed: int
    budget: int
    scheduler_overrides: dict = {}
    concurrency: int = 1


def run_one(task) -> dict:
    """One searcher on one landscape instance: the regret after every trial, trials run in rounds
    of ``concurrency`` (every λ of a round suggested before any of them reports)."""
    spec, searcher_name, seed, budget, scheduler_overrides, concurrency = SearchTask(*task)
    import optuna
    from ray.tune.search import Searcher

    from search.searcher import trial_lambda

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Define-by-run function")  # Ray times Optuna's ask as if it were ours
    landscape = make_landscape(spec, seed)
    dimensions = [f"d{k}" for k in range(spec.m)]
    searcher = build_searcher(searcher_name, dimensions, seed, budget, scheduler_overrides)
    noise = np.random.default_rng([seed, 7])
    start = time.perf_counter()
    best_observed, regret = -np.inf, []
    for first in range(0, budget, concurrency):
        trial_ids = [f"t{t}" for t in range(first, min(first + concurrency, budget))]
        configs = [searcher.suggest(trial_id) for trial_id in trial_ids]
        for trial_id, config in zip(trial_ids, configs):
            if config in (None, Searcher.FINISHED):  # the centroid alone: one trial, kept
                regret.append(regret[-1])
                continue
            weights = trial_lambda(config, dimensions)
            true = float(landscape(weights)[0])
            observed = true + (noise.normal(0, NOISE_SD) if spec.noisy else 0.0)
            searcher.on_trial_complete(trial_id, {"objective": observed})
            if observed > best_observed:
                best_observed, chosen = observed, true
            regret.append(1.0 - chosen)
    choice = getattr(searcher, "model_choice", None)  # ours: the model of its last fit
    model = f"degree {choice['degree']}, alpha {choice['alpha']:g}" if choice else ""
    return {"concurrency": concurrency, "landscape": spec.name, "searcher": searcher_name, "seed": seed, "seconds": time.perf_counter() - start,
            "regret": regret, "final_model": model}


# ----------------------------------------------------------------------------- report


def summarise(runs: pd.DataFrame, budgets=BUDGETS) -> pd.DataFrame:
    """Median and quartiles of the regret after each budget, per concurrency, landscape and searcher."""
    rows = []
    for (concurrency, landscape, searcher), group in runs.groupby(["concurrency", "landscape", "searcher"], sort=False):
        curves = np.stack(group["regret"].to_list())
        for t in (t for t in budgets if t <= curves.shape[1]):
            q25, median, q75 = np.percentile(curves[:, t - 1], [25, 50, 75])
            rows.append({"concurrency": concurrency, "landscape": landscape, "searcher": searcher, "trials": t, "median": median, "q25": q25, "q75": q75})
    return pd.DataFrame(rows)


def markdown_table(summary: pd.DataFrame) -> str:
    """Rows: concurrency × landscape × trials; columns: searchers; cells: median [q25, q75]; the best median in bold."""
    searchers = list(dict.fromkeys(summary["searcher"]))
    lines = ["| C | landscape | trials | " + " | ".join(searchers) + " |", "|---:|---|---:|" + "---:|" * len(searchers)]
    for (concurrency, landscape, trials), group in summary.groupby(["concurrency", "landscape", "trials"], sort=False):
        cells = group.set_index("searcher").loc[searchers]
        best = cells["median"].min()
        row = [f"{'**' if r.median == best else ''}{r.median:.3f}{'**' if r.median == best else ''} [{r.q25:.3f}, {r.q75:.3f}]" for r in cells.itertuples()]
        lines.append(f"| {concurrency} | {landscape} | {trials} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def median_interval(values: np.ndarray, draws: int = 5000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% interval of the median of ``values`` (one per seed), the seeds resampled."""
    picks = np.random.default_rng(seed).integers(0, len(values), (draws, len(values)))
    low, high = np.percentile(np.median(values[picks], axis=1), [2.5, 97.5])
    return float(low), float(high)


def regrets_at(runs: pd.DataFrame, searcher: str, at: int) -> np.ndarray:
    """The regret after ``at`` trials of ``searcher``, one per seed in seed order."""
    rows = runs[runs["searcher"] == searcher].sort_values("seed")
    return np.array([regret[at - 1] for regret in rows["regret"]])


def target_checks(runs: pd.DataFrame, at: int = TARGET_TRIALS, early: int = 10) -> pd.DataFrame:
    """The targets, one row per concurrency and landscape: after ``at`` trials ours has the lowest
    median regret (``lowest``, a tie included) or lies within the bootstrap 95% interval of the best
    searcher's median (``within_best``); after ``early`` trials ours is no worse than random (median
    against median)."""
    rows = []
    for (concurrency, landscape), group in runs.groupby(["concurrency", "landscape"], sort=False):
        medians = {name: float(np.median(regrets_at(group, name, at))) for name in group["searcher"].unique()}
        best = min(medians, key=medians.get)
        low, high = median_interval(regrets_at(group, best, at))
        ours_early, random_early = (float(np.median(regrets_at(group, name, early))) for name in ("ours", "random"))
        rows.append({
            "concurrency": concurrency, "landscape": landscape, "ours": medians["ours"], "best": best,
            "best_median": medians[best], "best_low": low, "best_high": high,
            "within_best": medians["ours"] <= high, "lowest": medians["ours"] <= min(medians.values()), f"ours@{early}": ours_early, f"random@{early}": random_early,
            "not_worse_than_random": ours_early <= random_early,
        })
    return pd.DataFrame(rows)


def target_lines(checks: pd.DataFrame) -> list[str]:
    lines = []
    for row in checks.to_dict("records"):
        early = [key for key in row if key.startswith("ours@")][0]
        at = early.removeprefix("ours@")
        lines.append(
            f"C={row['concurrency']} {row['landscape']:<22} ours {row['ours']:.3f}  best {row['best']} {row['best_median']:.3f} "
            f"[{row['best_low']:.3f}, {row['best_high']:.3f}]: {'ok ' if row['within_best'] else 'MISS'}  "
            f"at {at}: ours {row[early]:.3f} random {row['random@' + at]:.3f}: {'ok' if row['not_worse_than_random'] else 'MISS'}"
        )
    return lines


def plot_curves(runs: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(runs.groupby(["concurrency", "landscape"], sort=False))
    columns = 4
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), sharex=True, squeeze=False)
    for axis, ((concurrency, landscape), panel) in zip(axes.flat, panels):
        for searcher, group in panel.groupby("searcher", sort=False):
            curves = np.stack(group["regret"].to_list())
            trials = np.arange(1, curves.shape[1] + 1)
            q25, median, q75 = np.percentile(curves, [25, 50, 75], axis=0)
            axis.plot(trials, median, label=searcher)
            axis.fill_between(trials, q25, q75, alpha=0.15)
        axis.set_title(f"{landscape}, C = {concurrency}", fontsize=9)
        axis.set_yscale("symlog", linthresh=1e-2)
    for axis in axes.flat[len(panels):]:
        axis.axis("off")
    for axis in axes[-1]:
        axis.set_xlabel("trials")
    axes[0][0].set_ylabel("simple regret (median, IQR)")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# ----------------------------------------------------------------------------- entry point


def model_shares(runs: pd.DataFrame) -> pd.DataFrame:
    """Share of ours' searches whose last fit used each model, per landscape kind (columns)."""
    ours = runs[runs["searcher"] == "ours"]
    kinds = ours["landscape"].str.split().str[0]
    return pd.crosstab(ours["final_model"], kinds, normalize="columns")


def refit_seconds(overrides: dict, observations: int = 40, m: int = 4, repeats: int = 5) -> float:
    """The median time of one scheduler fit on ``observations`` observations: what every suggestion costs."""
    from search.lambda_scheduler import LambdaSchedulerSettings

    rng = np.random.default_rng(0)
    lambdas, scores = rng.dirichlet(np.ones(m), observations), rng.normal(size=observations)
    settings = LambdaSchedulerSettings(**overrides)
    settings.build(random_state=0).fit(lambdas, scores)  # imports and caches warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        settings.build(random_state=0).fit(lambdas, scores)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs for ``LambdaSchedulerSettings``, values read as YAML scalars."""
    import yaml

    from search.lambda_scheduler import LambdaSchedulerSettings

    known = {f.name for f in dataclasses.fields(LambdaSchedulerSettings)}
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--scheduler {item!r}: expected key=value with key one of {', '.join(sorted(known))}")
        overrides[key] = yaml.safe_load(value)
    LambdaSchedulerSettings(**overrides)  # bad values fail here, before any work
    return overrides


def tasks_for(args, overrides) -> list:
    specs = [LandscapeSpec(kind, m, noisy) for m in args.dimensions for kind in args.kinds for noisy in (False, True)]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    tasks = [SearchTask(spec, searcher, seed, args.trials, overrides, concurrency)
             for concurrency in args.concurrency for spec in specs for searcher in args.searchers for seed in seeds]
    return sorted(tasks, key=lambda task: task.searcher != "optuna-gp")  # the slowest first: the pool ends together


def single_threaded() -> None:
    """One thread per worker process: with a pool of os.cpu_count() processes, each also running
    BLAS, OpenMP and torch on every core, Optuna's GP ran 5× slower per search than alone."""
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    torch.set_num_threads(1)


def run_all(tasks, jobs: int) -> pd.DataFrame:
    from rich.progress import Progress

    results = []
    with ProcessPoolExecutor(max_workers=jobs, initializer=single_threaded) as pool, Progress() as progress:
        bar = progress.add_task("searches", total=len(tasks))
        for result in pool.map(run_one, tasks, chunksize=4):
            results.append(result)
            progress.advance(bar)
    return pd.DataFrame(results)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0, help="tuning uses other seeds than the report (e.g. 1000)")
    parser.add_argument("--trials", type=int, default=TARGET_TRIALS, help=f"trials per search; regret is reported after {', '.join(map(str, BUDGETS))} where there are that many")
    parser.add_argument("--concurrency", nargs="+", type=int, default=list(CONCURRENCY), help="trials per round, every λ of a round suggested before any reports")
    parser.add_argument("--searchers", nargs="+", default=list(SEARCHERS), choices=SEARCHERS)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--dimensions", nargs="+", type=int, default=[3, 4], choices=[3, 4])
    parser.add_argument("--scheduler", nargs="*", default=[], metavar="KEY=VALUE", help="LambdaSchedulerSettings overrides for ours")
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the table, the runs and the PNG go")
    args = parser.parse_args(argv)
    if args.trials < TARGET_TRIALS:
        parser.error(f"--trials must be at least {TARGET_TRIALS} (the targets are judged after {TARGET_TRIALS} trials)")
    if min(args.concurrency) < 1:
        parser.error("--concurrency must be at least 1")

    overrides = parse_overrides(args.scheduler)
    tasks = tasks_for(args, overrides)
    start = time.perf_counter()
    runs = run_all(tasks, args.jobs)
    elapsed = time.perf_counter() - start
    summary = summarise(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    runs.assign(regret=runs["regret"].map(lambda r: " ".join(f"{v:.5g}" for v in r))).to_csv(args.out / "runs.csv", index=False)
    summary.to_csv(args.out / "summary.csv", index=False)
    table = markdown_table(summary)
    (args.out / "summary.md").write_text(table + "\n")
    plot_curves(runs, args.out / "regret.png")
    print(table)
    if {"ours", "random"} <= set(args.searchers):
        checks = target_checks(runs)
        checks.to_csv(args.out / "targets.csv", index=False)
        print(f"\nTargets: after {TARGET_TRIALS} trials ours lowest or within the best's bootstrap 95% interval; after 10 no worse than random\n" + "\n".join(target_lines(checks)))
        print(f"met: {int(checks['within_best'].sum())}/{len(checks)} within the best, {int(checks['not_worse_than_random'].sum())}/{len(checks)} not worse than random; "
              f"ours has the lowest median on {int(checks['lowest'].sum())}/{len(checks)}")
    if "ours" in args.searchers:
        print(f"\nours' last fit, share of searches by landscape kind:\n{model_shares(runs).to_string(float_format=lambda v: f'{v:.0%}')}")
        print(f"one refit at 40 observations, m = 4: {1000 * refit_seconds(overrides):.1f} ms")
    seconds = runs.groupby("searcher")["seconds"].sum()
    print(f"\n{len(tasks)} searches in {elapsed:.0f} s on {args.jobs} processes; CPU seconds by searcher: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    print(f"written: {args.out}/summary.md, summary.csv, runs.csv, regret.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
