import math
import warnings

import numpy as np
import pytest
from sklearn.base import clone

from lambda_dpo.lambdas import LambdaConfig, build_sampler, lambdas_for_examples, read_schedule
from search.lambda_scheduler import PolynomialScheduler, basis_powers, leave_one_out, leave_one_out_error, simplex_grid, softmax

PAPER_LAMBDAS = np.vstack([np.eye(4), np.full(4, 0.25)])
PAPER_SCORES = np.array([0.4593, 0.4598, 0.4543, 0.4548, 0.4612])
DIMENSIONS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]


def test_monomial_basis_has_c_d_plus_p_choose_p_features_and_is_rank_deficient_on_the_simplex():
    powers = basis_powers(4, 2, "monomial")
    assert len(powers) == math.comb(4 + 2, 2) == 15
    from search.lambda_scheduler import polynomial_features

    features = polynomial_features(np.random.default_rng(0).dirichlet(np.ones(4), 200), powers)
    assert np.linalg.matrix_rank(features) == 10
    scheffe = polynomial_features(np.random.default_rng(0).dirichlet(np.ones(4), 200), basis_powers(4, 2, "scheffe"))
    assert scheffe.shape[1] == 10 and np.linalg.matrix_rank(scheffe) == 10


@pytest.mark.parametrize("basis, features", [("monomial", 15), ("scheffe", 10)])
def test_paper_instance_is_reproduced_by_the_unregularised_fit(basis, features):
    scheduler = PolynomialScheduler(degree=2, basis=basis, regression="lstsq", random_state=0).fit(PAPER_LAMBDAS, PAPER_SCORES)
    assert scheduler.n_features_ == features
    np.testing.assert_allclose(scheduler.predict(PAPER_LAMBDAS), PAPER_SCORES, atol=1e-9, rtol=0)


def test_lstsq_is_the_minimum_norm_solution():
    scheduler = PolynomialScheduler(regression="lstsq").fit(PAPER_LAMBDAS, PAPER_SCORES)
    from search.lambda_scheduler import polynomial_features

    design = polynomial_features(PAPER_LAMBDAS, scheduler.powers_)
    np.testing.assert_allclose(scheduler.coef_, np.linalg.pinv(design) @ (PAPER_SCORES - PAPER_SCORES.mean()), atol=1e-12)


@pytest.mark.parametrize("scale", ["raw", "std"])
def test_probabilities_are_softmax_of_temperature_times_scores(scale):
    scheduler = PolynomialScheduler(temperature=37.0, temperature_scale=scale, n_candidates=300, random_state=1).fit(PAPER_LAMBDAS, PAPER_SCORES)
    candidates, probabilities = scheduler.distribution()
    scores = scheduler.predict(candidates)
    if scale == "std":
        scores = (scores - scores.mean()) / scores.std()
    expected = np.exp(37.0 * scores - (37.0 * scores).max())
    np.testing.assert_allclose(probabilities, expected / expected.sum(), rtol=1e-10)


def test_temperature_limits():
    cold = PolynomialScheduler(temperature=0.0, random_state=0).fit(PAPER_LAMBDAS, PAPER_SCORES)
    np.testing.assert_allclose(cold.probabilities_, 1 / len(cold.candidates_))
    hot = PolynomialScheduler(temperature=1e6, random_state=0).fit(PAPER_LAMBDAS, PAPER_SCORES)
    assert hot.probabilities_[np.argmax(hot.candidate_scores_)] > 0.999


def test_bayesian_scores_candidates_by_mean_plus_kappa_std():
    scheduler = PolynomialScheduler(regression="bayesian", kappa=2.0, n_candidates=200, random_state=0).fit(PAPER_LAMBDAS, PAPER_SCORES)
    mean, std = scheduler.predict(scheduler.candidates_, return_std=True)
    assert np.all(std > 0)
    np.testing.assert_allclose(scheduler.candidate_scores_, mean + 2.0 * std)
    with pytest.raises(ValueError, match="gives no predictive std"):
        PolynomialScheduler().fit(PAPER_LAMBDAS, PAPER_SCORES).predict(PAPER_LAMBDAS, return_std=True)


@pytest.mark.parametrize("m", [3, 4])
def test_dirichlet_candidates_are_uniform_on_the_simplex(m):
    scheduler = PolynomialScheduler(n_candidates=30_000, local_candidates=0, random_state=0).fit(np.eye(m), np.arange(m, dtype=float))
    candidates = scheduler.candidates_
    np.testing.assert_allclose(candidates.sum(axis=1), 1.0)
    variance = (m - 1) / (m**2 * (m + 1))
    assert np.all(np.abs(candidates.mean(axis=0) - 1 / m) < 5 * np.sqrt(variance / len(candidates)))
    np.testing.assert_allclose(candidates.var(axis=0), variance, rtol=0.05)


@pytest.mark.parametrize("d, r", [(3, 4), (4, 10), (5, 3)])
def test_grid_is_the_simplex_lattice(d, r):
    grid = simplex_grid(d, r)
    assert len(grid) == math.comb(r + d - 1, d - 1)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert np.all(grid >= 0) and len(np.unique(np.round(grid * r).astype(int), axis=0)) == len(grid)
    scheduler = PolynomialScheduler(candidates="grid", grid_resolution=r, local_candidates=0).fit(np.eye(d), np.arange(d, dtype=float))
    np.testing.assert_array_equal(scheduler.candidates_, grid)


def quadratic_landscape(lambdas, optimum=np.array([0.55, 0.25, 0.15, 0.05])):
    return 1.0 - np.sum((lambdas - optimum) ** 2, axis=1)


@pytest.mark.parametrize("seed", range(3))
def test_sampling_concentrates_near_the_maximum_of_a_known_quadratic(seed):
    rng = np.random.default_rng(seed)
    grid = simplex_grid(4, 40)
    true_values = quadratic_landscape(grid)
    value_range = true_values.max() - true_values.min()
    observed = rng.dirichlet(np.ones(4), 20)
    noisy = quadratic_landscape(observed) + rng.normal(0, 0.02 * value_range, 20)
    scheduler = PolynomialScheduler(random_state=seed).fit(observed, noisy)
    samples = scheduler.sample(1000)
    assert np.median(quadratic_landscape(samples)) >= true_values.max() - 0.1 * value_range


def test_leave_one_out_predicts_each_point_from_the_others():
    rng = np.random.default_rng(0)
    observed = rng.dirichlet(np.ones(4), 14)
    exact = PolynomialScheduler(degree=2, basis="scheffe", regression="lstsq", random_state=0)  # 10 features, 13 points per fit
    np.testing.assert_allclose(leave_one_out(exact, observed, quadratic_landscape(observed)), quadratic_landscape(observed), atol=1e-9)

    # Refitted without the point: an outlier is not predicted, and its error shows.
    scores = quadratic_landscape(observed)
    scores[3] += 0.5
    predicted = leave_one_out(exact, observed, scores)
    assert abs(predicted[3] - scores[3]) > 0.4 and predicted[3] == pytest.approx(quadratic_landscape(observed[3:4])[0], abs=1e-9)

    noisy = quadratic_landscape(observed) + rng.normal(0, 0.01, 14)
    error, yardstick = leave_one_out_error(noisy, leave_one_out(PolynomialScheduler(random_state=0), observed, noisy))
    assert 0 < error < yardstick  # the quadratic is worth more than the others' mean
    flat = rng.normal(0, 0.01, 14)
    error, yardstick = leave_one_out_error(flat, leave_one_out(PolynomialScheduler(random_state=0), observed, flat))
    assert yardstick == pytest.approx(np.sqrt(np.mean((flat - (flat.sum() - flat) / 13) ** 2)))
    with pytest.raises(ValueError, match="at least 3 observations"):
        leave_one_out(exact, observed[:2], scores[:2])


def test_json_round_trip_gives_identical_predictions_and_samples(tmp_path):
    probe = np.random.default_rng(5).dirichlet(np.ones(4), 50)
    for regression in ("lstsq", "ridge", "bayesian"):
        for basis in ("monomial", "scheffe"):
            fitted = PolynomialScheduler(basis=basis, regression=regression, dimensions=DIMENSIONS, random_state=3).fit(PAPER_LAMBDAS, PAPER_SCORES)
            path = tmp_path / f"{basis}-{regression}.json"
            fitted.to_json(path)
            loaded = PolynomialScheduler.from_json(path)
            np.testing.assert_array_equal(loaded.predict(probe), fitted.predict(probe))
            if regression == "bayesian":
                np.testing.assert_array_equal(loaded.predict(probe, return_std=True)[1], fitted.predict(probe, return_std=True)[1])
            np.testing.assert_array_equal(loaded.distribution()[1], fitted.distribution()[1])
            np.testing.assert_array_equal(loaded.sample(20, random_state=9), fitted.sample(20, random_state=9))
            assert loaded.get_params() == {**fitted.get_params(), "dimensions": DIMENSIONS}
    assert PolynomialScheduler.from_json(fitted.to_json()).predict(probe[:1]) == fitted.predict(probe[:1])


def test_the_scheduled_sampler_reads_the_schedule_json(tmp_path):
    fitted = PolynomialScheduler(temperature=5000.0, dimensions=DIMENSIONS, random_state=0).fit(PAPER_LAMBDAS, PAPER_SCORES)
    path = tmp_path / "schedule.json"
    fitted.to_json(path)
    schedule = read_schedule(path)
    np.testing.assert_array_equal(schedule.candidates, fitted.candidates_)
    sampler = build_sampler(LambdaConfig(sampler="scheduled", schedule=str(path)), DIMENSIONS)
    draws = lambdas_for_examples(sampler, range(3000), seed=0)
    # The sampler's draws follow the fitted distribution: their mean predicted score matches its expectation.
    expected = float(fitted.probabilities_ @ fitted.predict(fitted.candidates_))
    assert np.mean(fitted.predict(draws)) == pytest.approx(expected, abs=2e-4)


def test_estimator_contract():
    scheduler = PolynomialScheduler(degree=3, temperature=5.0, random_state=4)
    assert not hasattr(scheduler, "coef_")
    twin = clone(scheduler)
    assert twin.get_params() == scheduler.get_params()
    assert scheduler.fit(PAPER_LAMBDAS, PAPER_SCORES) is scheduler
    np.testing.assert_array_equal(twin.fit(PAPER_LAMBDAS, PAPER_SCORES).candidates_, scheduler.candidates_)
    with pytest.raises(RuntimeError, match="not fitted"):
        PolynomialScheduler().predict(PAPER_LAMBDAS)


@pytest.mark.parametrize(
    "lambdas, scores, message",
    [
        (np.array([[0.5, 0.6], [0.5, 0.5]]), np.array([1.0, 2.0]), r"lambdas\[0\] sums to 1.1"),
        (np.array([[1.2, -0.2], [0.5, 0.5]]), np.array([1.0, 2.0]), "negative"),
        (PAPER_LAMBDAS, np.array([0.1, np.nan, 0.2, 0.3, 0.4]), r"scores\[1\] is nan"),
        (PAPER_LAMBDAS, np.array([0.1, 0.2]), r"scores must be \[n\] = \[5\]"),
        (np.ones(4) / 4, np.array([1.0]), "lambdas must be"),
    ],
)
def test_invalid_observations_raise_clear_errors(lambdas, scores, message):
    with pytest.raises(ValueError, match=message):
        PolynomialScheduler().fit(lambdas, scores)


def test_invalid_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="basis must be one of"):
        PolynomialScheduler(basis="legendre").fit(PAPER_LAMBDAS, PAPER_SCORES)
    with pytest.raises(ValueError, match="candidates must be one of"):
        PolynomialScheduler(candidates="sobol").fit(PAPER_LAMBDAS, PAPER_SCORES)
    with pytest.raises(ValueError, match=r"candidates\[1\]"):
        PolynomialScheduler(candidates=[[0.5, 0.5, 0, 0], [1, 1, 0, 0]]).fit(PAPER_LAMBDAS, PAPER_SCORES)
    with pytest.raises(ValueError, match="dimensions has 3 names"):
        PolynomialScheduler(dimensions=["a", "b", "c"]).fit(PAPER_LAMBDAS, PAPER_SCORES)


def test_lstsq_with_fewer_observations_than_dimensions_warns():
    with pytest.warns(UserWarning, match="3 observations for 4 dimensions"):
        PolynomialScheduler(regression="lstsq").fit(np.eye(4)[:3], np.array([0.1, 0.2, 0.3]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PolynomialScheduler(regression="lstsq").fit(PAPER_LAMBDAS, PAPER_SCORES)


def test_softmax_is_shift_invariant_and_stable():
    np.testing.assert_allclose(softmax(np.array([1000.0, 1001.0])), softmax(np.array([0.0, 1.0])))


def test_local_candidates_gather_near_the_best_observation_and_the_fitted_maximum():
    lambdas = np.vstack([np.eye(3), np.full((1, 3), 1 / 3), [[0.6, 0.3, 0.1]]])
    scores = np.array([0.1, 0.2, 0.0, 0.5, 0.9])
    plain = PolynomialScheduler(n_candidates=500, local_candidates=0, random_state=0).fit(lambdas, scores)
    local = PolynomialScheduler(n_candidates=500, local_candidates=200, local_concentration=100.0, random_state=0).fit(lambdas, scores)
    assert local.candidates_.shape == (700, 3) and np.allclose(local.candidates_.sum(axis=1), 1.0)
    assert np.array_equal(local.candidates_[:500], plain.candidates_)
    near_best = np.abs(local.candidates_[500:600] - lambdas[-1]).max(axis=1)
    assert np.median(near_best) < 0.1
    near_fitted_max = np.abs(local.candidates_[600:] - plain.best_candidate()).max(axis=1)
    assert np.median(near_fitted_max) < 0.1
    assert local.probabilities_.shape == (700,) and local.probabilities_.sum() == pytest.approx(1.0)
    restored = PolynomialScheduler.from_dict(local.to_dict())
    assert restored.local_candidates == 200 and np.array_equal(restored.candidates_, local.candidates_)


def test_given_candidates_get_no_local_ones_and_bad_local_settings_are_refused():
    lambdas, scores = np.eye(3), np.array([0.1, 0.2, 0.3])
    given = np.array([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    assert len(PolynomialScheduler(candidates=given, local_candidates=50).fit(lambdas, scores).candidates_) == 2
    with pytest.raises(ValueError, match="local_candidates"):
        PolynomialScheduler(local_candidates=-1).fit(lambdas, scores)
    with pytest.raises(ValueError, match="local_concentration"):
        PolynomialScheduler(local_concentration=0).fit(lambdas, scores)


def test_pending_lambda_push_probability_away_from_them_and_nowhere_else():
    rng = np.random.default_rng(0)
    lambdas = rng.dirichlet(np.ones(3), 12)
    scores = -((lambdas - [0.6, 0.3, 0.1]) ** 2).sum(1)
    scheduler = PolynomialScheduler(degree=2, random_state=0, pending_radius=0.2).fit(lambdas, scores)
    candidates, plain = scheduler.distribution()
    pending = scheduler.best_candidate()[None]
    _, penalised = scheduler.distribution(pending=pending)
    distance = np.linalg.norm(candidates - pending, axis=1)
    assert np.isclose(penalised.sum(), 1) and penalised[distance < 1e-12].max() == 0  # the running λ itself: never again
    near, far = distance < 0.1, distance > 0.6
    assert penalised[near].sum() < 0.5 * plain[near].sum()
    assert np.allclose(penalised[far] / plain[far], (penalised[far] / plain[far]).mean(), rtol=0.05)  # far away: only renormalised
    off = scheduler.set_params(pending_radius=0.0)
    assert np.array_equal(off.distribution(pending=pending)[1], plain)


@pytest.mark.parametrize("degree, alpha, bandwidth", [(2, 1e-3, None), (3, 1e-2, None), (4, 1.0, 0.3)])
def test_the_batched_leave_one_out_errors_are_the_ridge_fits_own(degree, alpha, bandwidth):
    from search.lambda_scheduler import basis_powers as powers_of, polynomial_features, ridge_leave_one_out_errors

    rng = np.random.default_rng(1)
    observed = rng.dirichlet(np.ones(4), 25)
    scores = quadratic_landscape(observed) + rng.normal(0, 0.01, 25)
    weights = np.ones(25)
    if bandwidth:  # weights fixed by the whole set, as _choose_model uses them
        weights = np.exp(-0.5 * (np.linalg.norm(observed - observed[np.argmax(scores)], axis=1) / bandwidth) ** 2)
    features = polynomial_features(observed, powers_of(4, degree, "monomial"))
    batched = ridge_leave_one_out_errors(features, scores, weights, alpha)
    for i in range(25):  # fold i by hand, through the scheduler's own ridge fit
        keep = np.arange(25) != i
        offset = np.average(scores[keep], weights=weights[keep])
        fold = PolynomialScheduler(degree=degree, alpha=alpha, random_state=0)
        coef, _, _ = fold._regress(features[keep], scores[keep] - offset, weights[keep], alpha)
        assert batched[i] == pytest.approx(scores[i] - offset - features[i] @ coef, abs=1e-9)
    if bandwidth is None:  # and cross_val_predict on the whole scheduler agrees
        np.testing.assert_allclose(scores - batched, leave_one_out(PolynomialScheduler(degree=degree, alpha=alpha, random_state=0), observed, scores), atol=1e-9)


def test_model_choice_loo_picks_the_degree_the_landscape_needs_and_records_it():
    rng = np.random.default_rng(2)
    observed = rng.dirichlet(np.ones(3), 30)
    quartic = lambda x: (x[:, 0] - 0.3) ** 2 * (x[:, 1] - 0.6) ** 2 * 40 + x[:, 2] ** 4  # noqa: E731
    chosen = PolynomialScheduler(model_choice="loo", random_state=0).fit(observed, quartic(observed))
    assert (chosen.degree_, chosen.model_choice_["by"]) == (4, "loo")
    assert chosen.model_choice_["loo_rmse"] < chosen.model_choice_["loo_rmse_of_settings"]
    assert chosen.n_features_ == len(basis_powers(3, 4, "monomial"))
    fixed = PolynomialScheduler(random_state=0).fit(observed, quartic(observed))
    assert (fixed.degree_, fixed.alpha_, fixed.model_choice_) == (3, 0.01, {"by": "fixed"})
    assert np.abs(chosen.predict(observed) - quartic(observed)).max() < np.abs(fixed.predict(observed) - quartic(observed)).max()

    # Written and read back: the schedule says which model it fitted and predicts the same.
    again = PolynomialScheduler.from_json(chosen.to_json())
    assert (again.degree_, again.alpha_, again.model_choice_) == (chosen.degree_, chosen.alpha_, chosen.model_choice_)
    assert chosen.to_dict()["model"]["choice"]["by"] == "loo"
    np.testing.assert_allclose(again.predict(observed), chosen.predict(observed))
    assert chosen.get_params()["degree"] == 3  # the estimator contract: fit leaves the parameters alone


def test_model_choice_loo_keeps_the_settings_below_its_minimum_and_on_a_tie():
    rng = np.random.default_rng(3)
    observed = rng.dirichlet(np.ones(4), 9)
    few = PolynomialScheduler(model_choice="loo", random_state=0).fit(observed, quadratic_landscape(observed))
    assert (few.degree_, few.alpha_, few.model_choice_) == (3, 0.01, {"by": "fixed below 10 observations"})
    flat = PolynomialScheduler(model_choice="loo", model_choice_min_observations=3, random_state=0).fit(observed, np.full(9, 0.5))
    assert (flat.degree_, flat.alpha_) == (3, 0.01)  # every model's error is 0: the settings' own wins


def test_model_choice_loo_needs_ridge_and_at_least_three_observations():
    with pytest.raises(ValueError, match="model_choice loo chooses among ridge models; set regression=ridge"):
        PolynomialScheduler(model_choice="loo", regression="bayesian").fit(PAPER_LAMBDAS, PAPER_SCORES)
    with pytest.raises(ValueError, match="model_choice_min_observations"):
        PolynomialScheduler(model_choice="loo", model_choice_min_observations=2).fit(PAPER_LAMBDAS, PAPER_SCORES)


def test_a_model_choice_refit_takes_under_a_second_at_40_observations():
    import time

    rng = np.random.default_rng(4)
    observed = rng.dirichlet(np.ones(4), 40)
    scores = quadratic_landscape(observed) + rng.normal(0, 0.01, 40)
    PolynomialScheduler(model_choice="loo", random_state=0).fit(observed, scores)  # imports and caches warm
    started = time.perf_counter()
    PolynomialScheduler(model_choice="loo", random_state=0).fit(observed, scores)
    assert time.perf_counter() - started < 1.0
