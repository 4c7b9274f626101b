import json
import shutil

import numpy as np
import pandas as pd
import pytest

from search.analysis import EXAMPLE, at_temperature, effective_sample_size, load_sweep


@pytest.fixture(scope="module")
def example():
    return load_sweep(EXAMPLE)


def test_the_shipped_example_is_the_demo_sweep(example):
    assert len(example.table) == 8
    assert example.dimensions == ["helpfulness", "honesty", "instruction_following", "truthfulness"]
    assert example.best()["trial_id"] == example.centroid()["trial_id"] == "c2cb7e4b"
    assert np.allclose(example.lambdas().sum(axis=1), 1.0)


def test_best_so_far_is_the_running_best_and_skips_errored_trials(example):
    table = example.table.copy()
    table.loc[0, "objective"] = np.nan
    values = table["objective"].to_numpy(float)
    running = type(example)(example.directory, example.config, table).best_so_far()
    assert np.isnan(running[0])
    assert running[1] == values[1]
    assert running[-1] == np.nanmax(values)
    assert np.all(np.diff(running[1:]) >= 0)


def test_per_dimension_reads_the_trials_final_evaluation(example):
    report = example.per_dimension("c2cb7e4b")
    metrics = json.loads((EXAMPLE / "runs" / "c2cb7e4b" / "eval.json").read_text())["metrics"]
    assert report.loc["top1_accuracy", "honesty"] == metrics["top1_accuracy/honesty"]
    assert report.loc["top1_accuracy", "mixed"] == metrics["top1_accuracy/mixed"]
    assert list(report.index) == ["top1_accuracy", "reward_accuracy", "ndcg", "loss"]


def test_a_missing_evaluation_names_the_trial_and_the_file(example):
    with pytest.raises(FileNotFoundError, match="trial nope: no final evaluation at .*nope/eval.json"):
        example.trial_metrics("nope")


def test_a_directory_without_results_is_refused_by_name(tmp_path):
    shutil.copy(EXAMPLE / "sweep.yaml", tmp_path / "sweep.yaml")
    with pytest.raises(FileNotFoundError, match="results.csv is missing"):
        load_sweep(tmp_path)


def test_refit_uses_the_sweeps_settings_unless_told_otherwise(example):
    own = example.fit()
    assert own.temperature == example.config.lambda_scheduler.temperature
    assert example.fit(temperature=11.0).temperature == 11.0
    assert np.allclose(own.observed_scores_, example.objective())


def test_a_higher_temperature_concentrates_the_same_candidates(example):
    fitted = example.fit()
    sizes = []
    for tau in (0.0, 3.0, 30.0):
        at_tau = at_temperature(fitted, tau)
        assert np.array_equal(at_tau.candidates_, fitted.candidates_)
        sizes.append(effective_sample_size(at_tau.probabilities_))
    assert sizes[0] == pytest.approx(len(fitted.candidates_))
    assert sizes[0] > sizes[1] > sizes[2]


def test_leave_one_out_refits_the_sweeps_scheduler_without_each_finished_trial(example):
    from search.lambda_scheduler import leave_one_out

    table = example.table.copy()
    table.loc[2, "objective"] = np.nan  # an errored trial is neither predicted nor fitted
    sweep = type(example)(example.directory, example.config, table)
    frame = sweep.leave_one_out()
    assert list(frame["trial_id"]) == [t for k, t in enumerate(example.table["trial_id"]) if k != 2]
    finished = table.drop(index=2)
    expected = leave_one_out(example.fit(), finished[[f"lambda/{d}" for d in example.dimensions]].to_numpy(float), finished["objective"].to_numpy(float))
    np.testing.assert_allclose(frame["predicted"], expected)
    np.testing.assert_allclose(frame["error"], frame["predicted"] - frame["objective"])


def test_warm_start_rows_compete_for_best_but_ran_here_keeps_to_the_sweeps_own_trials(example):
    from search.analysis import WARM_START

    warm = example.table.iloc[:2].assign(trial_id=["warm-start-0", "warm-start-1"], status=WARM_START)
    warm.loc[warm.index[0], "objective"] = 0.99  # better than every trial
    warm.loc[warm.index[1], [f"lambda/{d}" for d in example.dimensions]] = 0.25
    sweep = type(example)(example.directory, example.config, pd.concat([warm, example.table], ignore_index=True))
    assert sweep.best()["trial_id"] == "warm-start-0" and sweep.centroid()["trial_id"] == "warm-start-1"
    assert sweep.best(ran_here=True)["trial_id"] == sweep.centroid(ran_here=True)["trial_id"] == "c2cb7e4b"
    assert len(sweep.own_trials()) == 8


def test_the_shipped_real_model_sweep_reads_back_with_its_generation_scores():
    from search.analysis import REAL_MODEL_EXAMPLE

    sweep = load_sweep(REAL_MODEL_EXAMPLE)
    assert len(sweep.own_trials()) == 8 and len(sweep.table) == 15 and sweep.config.objective == "verifiable/mixed"
    best = sweep.best(ran_here=True)
    report = sweep.per_dimension(best["trial_id"])
    assert report.loc["verifiable", "mixed"] == pytest.approx(best["objective"])
    assert set(sweep.leave_one_out()["trial_id"]) == set(sweep.table["trial_id"])
