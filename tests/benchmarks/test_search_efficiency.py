"""The search-efficiency benchmark's parts: landscapes, the driver, the report."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PATH = Path(__file__).parents[2] / "benchmarks" / "search_efficiency.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("search_efficiency", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_efficiency"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["smooth", "sharp", "multimodal", "tabular"])
@pytest.mark.parametrize("m", [3, 4])
def test_landscapes_are_scaled_to_the_unit_range_with_the_optimum_at_one(bench, kind, m):
    landscape = bench.make_landscape(bench.LandscapeSpec(kind, m, False), seed=3)
    points = np.random.default_rng(0).dirichlet(np.ones(m), 5000)
    values = landscape(points)
    assert values.min() >= -1e-9 and values.max() <= 1 + 1e-9
    assert landscape(landscape.optimum)[0] == pytest.approx(1.0)
    assert np.isclose(landscape.optimum.sum(), 1.0) and landscape.optimum.min() >= 0


def test_the_same_seed_gives_the_same_landscape_and_another_seed_another(bench):
    spec = bench.LandscapeSpec("sharp", 4, False)
    x = np.full((1, 4), 0.25)
    assert bench.make_landscape(spec, 1)(x) == bench.make_landscape(spec, 1)(x)
    assert bench.make_landscape(spec, 1)(x) != bench.make_landscape(spec, 2)(x)


def test_the_tabular_landscape_passes_through_the_fine_tunes_it_was_made_from(bench):
    table = pd.read_csv(bench.TABLE)
    columns = [c for c in table.columns if c.startswith("lambda/")]
    f, _ = bench.tabular(4)
    assert np.allclose(f(table[columns].to_numpy(float)), table["objective"], atol=1e-9)
    assert len(table) == 35  # the resolution-4 grid for m = 4
    face, points = bench.tabular(3)
    assert len(points) == 15 and np.allclose(np.sum(points, axis=1), 1.0)


def test_regret_curves_are_non_negative_and_the_centroid_alone_stays_flat(bench):
    spec = bench.LandscapeSpec("smooth", 3, True)
    runs = {name: bench.run_one((spec, name, 0, 12, {})) for name in ("ours", "random", "centroid")}
    for run in runs.values():
        assert len(run["regret"]) == 12 and min(run["regret"]) >= -1e-9
    assert len(set(runs["centroid"]["regret"])) == 1
    landscape = bench.make_landscape(spec, 0)
    assert runs["centroid"]["regret"][0] == pytest.approx(1 - landscape(np.full((1, 3), 1 / 3))[0])


def test_without_noise_the_regret_never_rises(bench):
    run = bench.run_one((bench.LandscapeSpec("multimodal", 4, False), "ours", 1, 15, {}))
    assert np.all(np.diff(run["regret"]) <= 1e-12)


def test_summary_and_table_report_quartiles_and_mark_the_best(bench):
    runs = pd.DataFrame([
        {"concurrency": 4, "landscape": "L", "searcher": "a", "seed": s, "seconds": 0.0, "regret": [0.5] * 20} for s in range(3)
    ] + [{"concurrency": 4, "landscape": "L", "searcher": "b", "seed": s, "seconds": 0.0, "regret": [0.1 * s] * 20} for s in range(3)])
    summary = bench.summarise(runs)
    assert sorted(set(summary.trials)) == [5, 10, 20]  # 40 is more trials than the runs have
    row = summary[(summary.searcher == "b") & (summary.trials == 20)].iloc[0]
    assert (row["q25"], row["median"], row["q75"]) == pytest.approx((0.05, 0.1, 0.15))
    table = bench.markdown_table(summary)
    assert "| 4 | L | 20 | 0.500 [0.500, 0.500] | **0.100** [0.050, 0.150] |" in table


def test_bad_scheduler_overrides_are_refused_before_any_work(bench):
    with pytest.raises(SystemExit, match="--scheduler 'nope=1'"):
        bench.parse_overrides(["nope=1"])
    with pytest.raises(ValueError, match="regression"):
        bench.parse_overrides(["regression=magic"])
    assert bench.parse_overrides(["temperature=5", "regression=bayesian"]) == {"temperature": 5, "regression": "bayesian"}


def thread_counts() -> list[int]:
    import torch
    from threadpoolctl import threadpool_info

    return [torch.get_num_threads()] + [pool["num_threads"] for pool in threadpool_info()]


def test_pool_workers_run_single_threaded(bench):
    """With a worker per core each running BLAS/OpenMP/torch on every core, GP ran 5× slower."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, initializer=bench.single_threaded) as pool:
        assert set(pool.submit(thread_counts).result()) == {1}


def test_the_median_interval_brackets_the_median_and_narrows_with_agreement(bench):
    assert bench.median_interval(np.full(30, 0.25)) == pytest.approx((0.25, 0.25))
    spread = np.random.default_rng(0).uniform(0.0, 1.0, 30)
    low, high = bench.median_interval(spread)
    assert low < np.median(spread) < high and high - low < 0.5


def check_rows(bench, ours_late, best_late, ours_early, random_early):
    rows = []
    for seed in range(9):
        rows.append({"concurrency": 8, "landscape": "L", "searcher": "ours", "seed": seed, "seconds": 0.0, "regret": [ours_early] * 10 + [ours_late] * 10})
        rows.append({"concurrency": 8, "landscape": "L", "searcher": "optuna-gp", "seed": seed, "seconds": 0.0, "regret": [0.9] * 10 + [best_late + 0.01 * seed] * 10})
        rows.append({"concurrency": 8, "landscape": "L", "searcher": "random", "seed": seed, "seconds": 0.0, "regret": [random_early] * 20})
    return bench.target_checks(pd.DataFrame(rows)).iloc[0]


def test_the_targets_compare_ours_with_the_best_searchers_interval_and_with_random_early(bench):
    met = check_rows(bench, ours_late=0.15, best_late=0.10, ours_early=0.5, random_early=0.6)  # GP: 0.10–0.18, median 0.14
    assert met["best"] == "optuna-gp" and met["within_best"] and met["not_worse_than_random"]
    missed = check_rows(bench, ours_late=0.30, best_late=0.10, ours_early=0.7, random_early=0.6)
    assert not missed["within_best"] and not missed["not_worse_than_random"]
    assert check_rows(bench, ours_late=0.05, best_late=0.10, ours_early=0.5, random_early=0.6)["best"] == "ours"
    lines = bench.target_lines(pd.DataFrame([missed]))
    assert lines[0].startswith("C=8 L ") and "MISS" in lines[0]


def test_a_round_of_concurrent_trials_is_suggested_before_any_of_them_reports(bench, monkeypatch):
    from search.searcher import PolynomialLambdaSearcher

    live_at_suggestion = []
    original = PolynomialLambdaSearcher.suggest

    def counting(self, trial_id):
        live_at_suggestion.append(len(self.live))
        return original(self, trial_id)

    monkeypatch.setattr(PolynomialLambdaSearcher, "suggest", counting)
    run = bench.run_one(bench.SearchTask(bench.LandscapeSpec("smooth", 3, False), "ours", 0, 12, {}, 4))
    assert live_at_suggestion == [0, 1, 2, 3] * 3 and len(run["regret"]) == 12 and run["concurrency"] == 4
