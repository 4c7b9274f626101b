"""The λ searchers driven by hand, without a Ray cluster: suggest / on_trial_complete / state."""

import json
import pickle

import numpy as np
import pytest
from ray.tune.search import ConcurrencyLimiter, Searcher

from search.lambda_scheduler import PolynomialScheduler
from search.searcher import (
    GridLambdaSearcher,
    PolynomialLambdaSearcher,
    RandomLambdaSearcher,
    lambda_from_uniforms,
    optuna_searcher,
    trial_lambda,
)

DIMENSIONS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]
OPTIMUM = np.array([0.45, 0.35, 0.15, 0.05])


def landscape(weights):
    """A smooth concave score with its maximum at OPTIMUM."""
    return 0.7 - float(np.sum((np.asarray(weights) - OPTIMUM) ** 2))


def run(searcher, num_trials, score=landscape, concurrent=1):
    """Drive a searcher like Tune does: ``concurrent`` live trials, completions oldest first."""
    live, order = [], 0
    while True:
        while len(live) < concurrent:
            trial_id = f"t{order:03d}"
            config = searcher.suggest(trial_id)
            if config == Searcher.FINISHED:
                break
            live.append((trial_id, trial_lambda(config, DIMENSIONS)))
            order += 1
        if not live:
            return order
        trial_id, weights = live.pop(0)
        searcher.on_trial_complete(trial_id, {"objective": score(weights)})


def polynomial(**kwargs):
    defaults = dict(metric="objective", mode="max", num_trials=12, random_state=0, lambda_scheduler=PolynomialScheduler(temperature=3.0, temperature_scale="std"))
    return PolynomialLambdaSearcher(DIMENSIONS, **{**defaults, **kwargs})


def test_starting_design_first_then_finished_at_budget():
    searcher = polynomial(num_trials=7)
    configs = [searcher.suggest(f"t{i}") for i in range(5)]
    suggested = np.array([trial_lambda(c, DIMENSIONS) for c in configs])
    assert np.allclose(suggested, np.vstack([np.full(4, 0.25), 0.125 + 0.5 * np.eye(4)]))  # the centroid, then halfway to each vertex
    for i, row in enumerate(suggested):
        searcher.on_trial_complete(f"t{i}", {"objective": landscape(row)})
    assert trial_lambda(searcher.suggest("t5"), DIMENSIONS).shape == (4,)
    assert trial_lambda(searcher.suggest("t6"), DIMENSIONS).shape == (4,)
    assert searcher.suggest("t7") == Searcher.FINISHED


def test_the_papers_design_is_the_vertices_then_the_centroid_and_survives_a_save():
    searcher = polynomial(design="vertices")
    first = [trial_lambda(searcher.suggest(f"t{i}"), DIMENSIONS) for i in range(5)]
    assert np.allclose(first, np.vstack([np.eye(4), np.full(4, 0.25)]))
    restored = polynomial()
    restored.set_state(searcher.get_state())
    assert restored.design_kind == "vertices"
    with pytest.raises(ValueError, match="design must be one of axial, vertices"):
        polynomial(design="corners")


def test_proposals_made_while_trials_run_spread_away_from_them():
    """Local penalisation: with the same fit, a batch of 4 proposed before any reports is more
    spread out than 4 independent draws from the distribution."""
    def batch_spread(radius, seed):
        searcher = polynomial(num_trials=8, random_state=seed, lambda_scheduler=PolynomialScheduler(pending_radius=radius, temperature=10.0))
        run(searcher, 8)
        searcher.num_trials = 12
        batch = np.array([trial_lambda(searcher.suggest(f"b{k}"), DIMENSIONS) for k in range(4)])
        return np.mean([np.linalg.norm(a - b) for i, a in enumerate(batch) for b in batch[i + 1:]])

    penalised, independent = ([batch_spread(radius, seed) for seed in range(6)] for radius in (0.2, 0.0))
    assert np.mean(penalised) > 1.3 * np.mean(independent), (penalised, independent)


def test_warm_start_points_are_observations_and_their_design_points_are_not_run_again():
    searcher = polynomial(num_trials=3, design="vertices")
    searcher.add_evaluated_point({"lambda": dict(zip(DIMENSIONS, [1.0, 0, 0, 0]))}, 0.4)
    searcher.add_evaluated_point({"lambda": dict(zip(DIMENSIONS, [0.1, 0.2, 0.3, 0.4]))}, 0.6)
    searcher.add_evaluated_point({"lambda": dict(zip(DIMENSIONS, [0, 1.0, 0, 0]))}, float("nan"))
    lambdas, scores = searcher.observed()
    assert scores.tolist() == [0.4, 0.6] and len(searcher.errored) == 1
    first = [trial_lambda(searcher.suggest(f"t{i}"), DIMENSIONS) for i in range(3)]
    assert np.allclose(first, [[0, 0, 1, 0], [0, 0, 0, 1], [0.25] * 4])  # e1 and e2 are taken already
    assert searcher.suggest("t3") == Searcher.FINISHED  # the budget counts new trials only
    with pytest.raises(RuntimeError, match="before the first suggestion"):
        searcher.add_evaluated_point({"lambda": dict(zip(DIMENSIONS, [0.25] * 4))}, 0.5)


def report(searcher, trial_id, curve: dict[int, float], final_step=None):
    """Drive a trial as Tune does: a result per evaluation, then the completion with the last one."""
    for step, score in curve.items():
        searcher.on_trial_result(trial_id, {"objective": score, "evaluated_step": step})
    last = max(curve)
    searcher.on_trial_complete(trial_id, {"objective": curve[last], "evaluated_step": last})


def test_a_trial_stopped_early_is_taken_but_fitted_only_once_its_score_can_be_put_on_the_final_scale():
    searcher = polynomial(num_trials=6, final_step=30)
    ids = [f"t{i}" for i in range(3)]
    for trial_id in ids:
        searcher.suggest(trial_id)
    stopped_lambda = searcher.live["t0"]
    report(searcher, "t0", {10: 0.30})  # stopped by ASHA at its first rung
    assert searcher.stopped == [{"trial_id": "t0", "lambda": stopped_lambda, "step": 10, "score": 0.30}]
    assert searcher.observed()[1].size == 0  # no finished trial yet: a partial score is not a final one
    assert searcher.is_taken(np.array([stopped_lambda]))[0]
    report(searcher, "t1", {10: 0.40, 20: 0.45, 30: 0.50})
    report(searcher, "t2", {10: 0.50, 20: 0.60, 30: 0.70})
    lambdas, scores = searcher.observed()
    # finished first; the stopped one shifted by the median gain from step 10 to the end (0.1, 0.2 → 0.15)
    assert scores == pytest.approx([0.50, 0.70, 0.45])
    assert np.allclose(lambdas[2], stopped_lambda)
    restored = polynomial(num_trials=6)
    restored.set_state(json.loads(json.dumps(searcher.get_state())))
    assert restored.observed()[1] == pytest.approx(scores) and restored.final_step == 30


def test_without_early_stopping_every_completion_is_final():
    searcher = polynomial(num_trials=2)
    searcher.suggest("t0")
    report(searcher, "t0", {10: 0.3})
    assert searcher.stopped == [] and searcher.observed()[1].tolist() == [0.3] and searcher.curves == {}


def test_user_initial_points_replace_the_design():
    points = [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]
    searcher = polynomial(initial_points=points)
    first = [trial_lambda(searcher.suggest(f"t{i}"), DIMENSIONS) for i in range(2)]
    assert np.allclose(first, points)
    with pytest.raises(ValueError, match="initial_points"):
        polynomial(initial_points=[[0.5, 0.6, 0, 0]])


def test_after_the_design_it_samples_near_the_optimum_of_the_fitted_landscape():
    searcher = polynomial(num_trials=20)
    run(searcher, 20)
    lambdas, scores = searcher.observed()
    late = lambdas[10:]
    assert len(scores) == 20
    # later suggestions concentrate near the optimum: much closer than Dir(1) draws are on average
    random_gap = np.abs(np.random.default_rng(0).dirichlet(np.ones(4), 5000) - OPTIMUM).max(axis=1).mean()
    assert np.abs(late - OPTIMUM).max(axis=1).mean() < 0.5 * random_gap
    assert scores.max() > landscape(np.full(4, 0.25))


def test_never_resuggests_a_running_or_finished_lambda_within_tolerance():
    searcher = polynomial(num_trials=30, tolerance=0.05)
    run(searcher, 30, concurrent=3)
    lambdas = np.vstack([searcher.observed()[0]])
    distance = np.abs(lambdas[:, None] - lambdas[None]).max(-1) + np.eye(len(lambdas)) * 9
    assert distance.min() > 0.05


def test_minimising_mode_prefers_low_scores():
    searcher = polynomial(mode="min", num_trials=16)
    run(searcher, 16, score=lambda w: -landscape(w))
    lambdas, _ = searcher.observed()
    assert np.abs(lambdas[8:] - OPTIMUM).max(axis=1).mean() < 0.3


def test_errored_and_metricless_trials_are_recorded_not_fitted_and_not_repeated():
    searcher = polynomial(num_trials=8, tolerance=0.01)
    for i in range(5):
        searcher.suggest(f"t{i}")
    searcher.on_trial_complete("t0", None, error=True)
    searcher.on_trial_complete("t1", {"other": 1.0})
    searcher.on_trial_complete("t2", {"objective": float("nan")})
    searcher.on_trial_complete("t3", {"objective": 0.5})
    searcher.on_trial_complete("t4", {"objective": 0.6})
    searcher.on_trial_complete("unknown", {"objective": 0.9})  # ignored, no crash
    assert [e["trial_id"] for e in searcher.errored] == ["t0", "t1", "t2"]
    assert searcher.errored[0]["reason"] == "error" and "objective" in searcher.errored[1]["reason"]
    assert len(searcher.observed()[1]) == 2
    nxt = trial_lambda(searcher.suggest("t5"), DIMENSIONS)
    assert not np.allclose(nxt, [1, 0, 0, 0], atol=0.01)  # the errored vertex is not retried


def test_save_restore_continues_exactly(tmp_path):
    reference = polynomial(num_trials=14)
    run(reference, 14)

    interrupted = polynomial(num_trials=14)
    live = [interrupted.suggest(f"t{i:03d}") for i in range(2)]
    for i in range(2):
        interrupted.on_trial_complete(f"t{i:03d}", {"objective": landscape(trial_lambda(live[i], DIMENSIONS))})
    for i in range(2, 9):
        config = interrupted.suggest(f"t{i:03d}")
        interrupted.on_trial_complete(f"t{i:03d}", {"objective": landscape(trial_lambda(config, DIMENSIONS))})
    running = interrupted.suggest("t009")  # in flight when the driver dies
    interrupted.save(str(tmp_path / "state.json"))
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["metric"] == "objective" and state["mode"] == "max" and list(state["live"]) == ["t009"]

    restored = PolynomialLambdaSearcher(DIMENSIONS, metric="ignored", mode="min", num_trials=1)
    restored.restore(str(tmp_path / "state.json"))
    assert (restored.metric, restored.mode, restored.num_trials) == ("objective", "max", 14)
    restored.on_trial_complete("t009", {"objective": landscape(trial_lambda(running, DIMENSIONS))})
    for i in range(10, 15):
        config = restored.suggest(f"t{i:03d}")
        if config == Searcher.FINISHED:
            break
        restored.on_trial_complete(f"t{i:03d}", {"objective": landscape(trial_lambda(config, DIMENSIONS))})
    assert restored.observations == reference.observations

    with pytest.raises(ValueError, match="not a RandomLambdaSearcher state"):
        RandomLambdaSearcher(DIMENSIONS).restore(str(tmp_path / "state.json"))


def test_under_a_concurrency_limiter_no_more_than_the_limit_run():
    limited = ConcurrencyLimiter(polynomial(num_trials=6), max_concurrent=2)
    assert limited.suggest("a")["lambda"] and limited.suggest("b")["lambda"]
    assert limited.suggest("c") is None  # at the limit: ask later
    limited.on_trial_complete("a", {"objective": 0.1})
    assert limited.suggest("c")["lambda"]


def test_random_searcher_draws_seeded_dirichlet():
    a, b = RandomLambdaSearcher(DIMENSIONS, num_trials=50, random_state=3), RandomLambdaSearcher(DIMENSIONS, num_trials=50, random_state=3)
    assert run(a, 50) == 50 and run(b, 50) == 50
    lambdas = a.observed()[0]
    assert np.array_equal(lambdas, b.observed()[0])
    assert np.allclose(lambdas.sum(1), 1) and abs(lambdas.mean() - 0.25) < 0.05


def test_grid_searcher_covers_the_lattice_then_finishes():
    searcher = GridLambdaSearcher(DIMENSIONS, resolution=2, num_trials=100)
    assert run(searcher, 100) == 10  # compositions of 2 into 4 parts
    assert {tuple(row) for row in searcher.observed()[0] * 2} == {
        tuple(c) for c in np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]], dtype=float)
    }


def test_normalised_exponentials_of_uniforms_are_dirichlet_one():
    draws = np.array([lambda_from_uniforms(u) for u in np.random.default_rng(0).uniform(size=(20_000, 4))])
    assert np.allclose(draws.sum(1), 1)
    assert np.allclose(draws.mean(0), 0.25, atol=0.005)
    assert np.allclose(draws.var(0), 3 / 80, rtol=0.06)  # Beta(1, 3) marginals
    assert np.allclose(lambda_from_uniforms(np.exp(-np.array([0.1, 0.2, 0.3, 0.4]))), [0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_optuna_searcher_suggests_lambdas_on_the_simplex_starting_from_given_points(sampler):
    searcher = optuna_searcher(DIMENSIONS, metric="objective", mode="max", sampler=sampler, seed=0, initial_points=[[0.25] * 4])
    pickle.dumps(searcher)  # Tune saves the searcher with the experiment
    first = searcher.suggest("t0")
    assert np.allclose(trial_lambda(first, DIMENSIONS), 0.25)
    searcher.on_trial_complete("t0", {"objective": 0.5, **first})
    second = trial_lambda(searcher.suggest("t1"), DIMENSIONS)
    assert np.isclose(second.sum(), 1) and (second >= 0).all()


def test_bad_constructor_arguments_name_the_argument():
    with pytest.raises(ValueError, match="mode"):
        polynomial(mode="best")
    with pytest.raises(ValueError, match="num_trials"):
        polynomial(num_trials=0)
    with pytest.raises(ValueError, match="resolution"):
        GridLambdaSearcher(DIMENSIONS, resolution=0)
    with pytest.raises(ValueError, match="sampler"):
        optuna_searcher(DIMENSIONS, metric="objective", mode="max", sampler="cmaes")


def test_the_model_choice_of_the_last_fit_is_kept_with_the_state(tmp_path):
    searcher = PolynomialLambdaSearcher(DIMENSIONS, metric="objective", mode="max", num_trials=14, random_state=0,
                                        lambda_scheduler=PolynomialScheduler(model_choice="loo"))
    run(searcher, 12)
    assert searcher.model_choice["by"] == "loo" and searcher.model_choice["degree"] in (2, 3, 4)
    searcher.save(str(tmp_path / "state.json"))
    restored = PolynomialLambdaSearcher(DIMENSIONS, metric="objective", mode="max", num_trials=1)
    restored.restore(str(tmp_path / "state.json"))
    assert restored.model_choice == searcher.model_choice
    assert restored.lambda_scheduler.model_choice == "loo"  # and the setting itself, for the next fit
