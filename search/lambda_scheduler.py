"""The λ scheduler: polynomial regression over the simplex and softmax sampling (docs/lambda-scheduler.md).

``PolynomialScheduler`` follows the scikit-learn estimator contract: ``__init__`` only stores
its arguments, ``fit`` validates and returns ``self``, learned state ends in ``_``. Predictions
use only the stored arrays (exponents, coefficients, posterior covariance), so a scheduler read
back from JSON predicts exactly what the fitted one did.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import BayesianRidge, Ridge
from sklearn.preprocessing import PolynomialFeatures

from lambda_dpo.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Interval, check_settings, setting
from lambda_dpo.lambdas import SCHEDULE_FORMAT, SCHEDULE_VERSION, parse_schedule, validate_lambdas

BASES = ("monomial", "scheffe")
REGRESSIONS = ("lstsq", "ridge", "bayesian")
CANDIDATE_KINDS = ("dirichlet", "grid")
TEMPERATURE_SCALES = ("raw", "std")
MODEL_CHOICES = ("fixed", "loo")
# The ridge models `model_choice: loo` chooses among, by leave-one-out error (docs/lambda-scheduler.md).
CHOICE_DEGREES = (2, 3, 4)
CHOICE_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0)
CHOICE_SET = f"degrees {min(CHOICE_DEGREES)}–{max(CHOICE_DEGREES)} × alphas {min(CHOICE_ALPHAS):g}–{max(CHOICE_ALPHAS):g}"


def basis_powers(num_dimensions: int, degree: int, basis: str) -> np.ndarray:
    """``[F, d]`` exponents: feature f of λ is ``Π_k λ_k ** powers[f, k]``.

    monomial: every monomial of degree ≤ p, the constant included (``C(d+p, p)`` features; the
        paper's basis, collinear on the simplex because Σλ = 1).
    scheffe: the full-rank Scheffé mixture basis, no intercept: degree 1 ``λ_k``; degree 2
        ``λ_k`` and ``λ_iλ_j`` (i < j); degree p ≥ 3 the monomials of degree exactly p, which span
        the same functions on the simplex as the full Scheffé polynomial of degree p.
    """
    if degree < 1:
        raise ValueError(f"degree must be >= 1, got {degree}")
    if basis == "monomial":
        return PolynomialFeatures(degree, include_bias=True).fit(np.zeros((1, num_dimensions))).powers_.astype(int)
    if basis != "scheffe":
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    identity = np.eye(num_dimensions, dtype=int)
    if degree == 1:
        return identity
    if degree == 2:
        pairs = [identity[i] + identity[j] for i, j in itertools.combinations(range(num_dimensions), 2)]
        return np.vstack([identity, np.array(pairs, dtype=int).reshape(-1, num_dimensions)])
    return np.array(simplex_lattice_counts(num_dimensions, degree), dtype=int)


def simplex_lattice_counts(num_dimensions: int, resolution: int) -> list[tuple[int, ...]]:
    """Every composition of ``resolution`` into ``num_dimensions`` non-negative parts."""
    compositions = []
    for bars in itertools.combinations(range(resolution + num_dimensions - 1), num_dimensions - 1):
        edges = (-1,) + bars + (resolution + num_dimensions - 1,)
        compositions.append(tuple(edges[k + 1] - edges[k] - 1 for k in range(num_dimensions)))
    return compositions


def simplex_grid(num_dimensions: int, resolution: int) -> np.ndarray:
    """The simplex lattice ``{k / r : k ∈ ℕ^d, Σk = r}``: ``C(r+d−1, d−1)`` points."""
    if resolution < 1:
        raise ValueError(f"grid_resolution must be >= 1, got {resolution}")
    return np.array(simplex_lattice_counts(num_dimensions, resolution), dtype=float) / resolution


def polynomial_features(lambdas: np.ndarray, powers: np.ndarray) -> np.ndarray:
    """``[n, F]`` features ``Π_k λ_k ** powers[f, k]`` of ``[n, d]`` λ."""
    return np.prod(lambdas[:, None, :] ** powers[None, :, :], axis=2)


def softmax(values: np.ndarray) -> np.ndarray:
    shifted = values - values.max()
    weights = np.exp(shifted)
    return weights / weights.sum()


def effective_sample_size(probabilities: np.ndarray) -> float:
    """``1 / Σ p²``: how many candidates the distribution is really spread over."""
    return float(1.0 / np.square(probabilities).sum())


def leave_one_out(scheduler: "PolynomialScheduler", lambdas, scores) -> np.ndarray:
    """``[n]``: each observed score as ``scheduler``'s settings predict it when fitted on the other
    n − 1 observations (``lambdas`` ``[n, d]``, ``scores`` ``[n]``, n ≥ 3): ``scores`` minus this are
    the fit's errors at a λ it has not seen, which the in-sample fit (exact at n ≤ features) hides."""
    from sklearn.model_selection import LeaveOneOut, cross_val_predict

    scores = np.asarray(scores, dtype=float)
    if len(scores) < 3:
        raise ValueError(f"leave-one-out needs at least 3 observations, got {len(scores)}")
    return cross_val_predict(clone(scheduler), np.asarray(lambdas, dtype=float), scores, cv=LeaveOneOut())


def leave_one_out_error(scores, predicted) -> tuple[float, float]:
    """``(rmse, yardstick)`` of ``scores`` ``[n]`` against their :func:`leave_one_out` ``predicted``
    ``[n]``, and the same for the plainest guess, the mean of the other observations; a fit worth
    sampling from beats it."""
    scores, predicted = np.asarray(scores, dtype=float), np.asarray(predicted, dtype=float)
    others_mean = (scores.sum() - scores) / (len(scores) - 1)
    rmse = lambda guess: float(np.sqrt(np.mean((scores - guess) ** 2)))  # noqa: E731
    return rmse(predicted), rmse(others_mean)


def ridge_leave_one_out_errors(features: np.ndarray, scores: np.ndarray, weights: np.ndarray, alpha: float) -> np.ndarray:
    """``[n]`` leave-one-out errors of the scheduler's ridge fit (centred scores, no intercept, sample
    ``weights``) on ``features`` ``[n, F]``, without refitting n times.

    Fold i solves ``(A − wᵢxᵢxᵢᵀ) βᵢ = bᵢ`` with ``A = XᵀWX + αI`` (the normal equations sklearn's
    ``Ridge`` solves) and ``bᵢ`` the moments of the other scores about their weighted mean ȳ₋ᵢ. By
    Sherman–Morrison, ``xᵢᵀβᵢ = xᵢᵀA⁻¹bᵢ / (1 − wᵢhᵢ)`` with ``hᵢ = xᵢᵀA⁻¹xᵢ``: one solve with A for
    all n folds. :func:`leave_one_out` gives the same errors by n full fits."""
    num_features = features.shape[1]
    gram = features.T @ (weights[:, None] * features) + alpha * np.eye(num_features)
    projected = np.linalg.solve(gram, features.T).T  # X A⁻¹ (A is symmetric)
    leverage = weights * np.einsum("if,if->i", projected, features)  # wᵢhᵢ
    offsets = (weights @ scores - weights * scores) / (weights.sum() - weights)  # ȳ₋ᵢ
    with_scores = projected @ (features.T @ (weights * scores))  # xᵢᵀA⁻¹XᵀWy
    with_ones = projected @ (features.T @ weights)  # xᵢᵀA⁻¹XᵀW1
    fitted = (with_scores - leverage * scores - offsets * (with_ones - leverage)) / (1.0 - leverage)
    return scores - offsets - fitted


def feature_names(powers: np.ndarray, dimensions: list[str]) -> list[str]:
    names = []
    for row in powers:
        factors = [name if power == 1 else f"{name}^{power}" for name, power in zip(dimensions, row) if power]
        names.append("·".join(factors) if factors else "1")
    return names


@dataclass
class LambdaSchedulerSettings:
    """The scheduler's settings: the one home of their defaults, their help and their checks.

    The ``polynomial`` searcher, the sweep's ``schedule.json``, the ``schedule fit`` command and
    :class:`PolynomialScheduler`'s own defaults all read them from here. The defaults were chosen
    on the search-efficiency benchmark (benchmarks/README.md): a cubic under a stronger ridge and
    1,000 candidates near the best trial and the fitted maximum found good λ faster than the
    paper's quadratic with τ = 100 on raw scores (:data:`PRESETS` ``paper``).
    """

    degree: int = setting(3, within=AT_LEAST_ONE, help="polynomial degree p (the paper: 2)")
    basis: str = setting("monomial", help="monomial: every monomial of degree ≤ p (the paper's); scheffe: the full-rank mixture basis", choices=BASES)
    regression: str = setting("ridge", help="lstsq: minimum-norm least squares; ridge: L2 penalty alpha; bayesian: candidates scored by mean + kappa·std", choices=REGRESSIONS)
    alpha: float = setting(1e-2, within=NON_NEGATIVE, help="ridge penalty")
    kappa: float = setting(1.0, within=NON_NEGATIVE, help="exploration weight of the predictive std (bayesian)")
    candidates: str = setting("dirichlet", help="dirichlet: n_candidates draws from Dir(dirichlet_alpha); grid: the simplex lattice of grid_resolution", choices=CANDIDATE_KINDS)
    n_candidates: int = setting(2000, within=AT_LEAST_ONE, help="Dirichlet candidates")
    dirichlet_alpha: float = setting(1.0, within=POSITIVE, help="concentration of the Dirichlet candidates (1: uniform on the simplex)")
    grid_resolution: int = setting(10, within=AT_LEAST_ONE, help="steps per side of the grid candidates")
    local_candidates: int = setting(1000, within=NON_NEGATIVE, help="extra candidates near the best observed λ and the fitted maximum (half each)")
    local_concentration: float = setting(50.0, within=POSITIVE, help="how tightly the local candidates gather (std ≈ √(λ(1−λ)/c))")
    local_bandwidth: Optional[float] = setting(None, within=POSITIVE, help="if set, observations weighted by exp(−½(‖λ − λ_best‖/h)²) around the best observed λ")
    temperature: float = setting(3.0, within=NON_NEGATIVE, help="τ of p(λ) = softmax(τ·f(λ)) (the paper: 100 on raw scores)")
    temperature_scale: str = setting("std", help="raw: τ on the score's own scale (the paper's); std: scores standardised over the candidates first", choices=TEMPERATURE_SCALES)
    pending_radius: float = setting(0.2, within=NON_NEGATIVE, help="while trials run, p(λ) is scaled by 1 − exp(−½(d/r)²) for the distance d to each running λ, so a batch spreads out (0: off)")
    model_choice: str = setting("fixed", help=f"fixed: degree and alpha as set; loo: at each fit, the ridge model among {CHOICE_SET} with the lowest leave-one-out error", choices=MODEL_CHOICES)
    model_choice_min_observations: int = setting(10, within=Interval(3, None), help="model_choice loo keeps degree and alpha below this many observations")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.model_choice == "loo" and self.regression != "ridge":
            raise ValueError(f"lambda_scheduler.model_choice loo chooses among ridge models; set regression=ridge (not {self.regression}) or model_choice=fixed")

    def build(self, dimensions=None, random_state=None, candidates=None) -> "PolynomialScheduler":
        """An unfitted scheduler with these settings (``candidates``: an ``[K, d]`` array to score instead)."""
        params = dataclasses.asdict(self)
        if candidates is not None:
            params["candidates"] = candidates
        return PolynomialScheduler(**params, dimensions=dimensions, random_state=random_state)


DEFAULTS = LambdaSchedulerSettings()
# The paper's scheduler: a quadratic fitted by plain least squares, τ = 100 on raw scores, no local candidates.
PRESETS = {
    "default": DEFAULTS,
    "paper": dataclasses.replace(DEFAULTS, degree=2, regression="lstsq", local_candidates=0, temperature=100.0, temperature_scale="raw"),
}


class PolynomialScheduler(BaseEstimator):
    """Fit a polynomial in λ to observed scores and turn it into a sampling distribution.

    Parameters (defaults and checks: :class:`LambdaSchedulerSettings`):
        degree: polynomial degree p (the paper uses 2).
        basis: ``monomial`` (the paper's, ``C(d+p, p)`` features) or ``scheffe`` (full rank).
        regression: ``lstsq`` (minimum-norm least squares), ``ridge`` (L2 with ``alpha``) or
            ``bayesian`` (BayesianRidge; candidates are scored by ``mean + kappa·std``).
        alpha: ridge penalty.
        kappa: exploration weight of the predictive std for ``bayesian``.
        candidates: ``dirichlet`` (``n_candidates`` draws from Dir(``dirichlet_alpha``)),
            ``grid`` (the simplex lattice of ``grid_resolution``) or an ``[K, d]`` array of λ.
        local_candidates: for ``dirichlet``/``grid``, this many more candidates drawn close to the
            best observed λ and to the fitted maximum (half each), from Dir(``local_concentration``·λ
            + 0.1): the global set is too coarse to place λ finely near a peak.
        local_concentration: how tightly the local candidates gather (std ≈ √(λ(1−λ)/c)).
        local_bandwidth: if set, observations are weighted by exp(−½(‖λ − λ_best‖/h)²) around the
            best observed λ, so the polynomial describes the neighbourhood of the best trial
            rather than the whole simplex (a quadratic cannot follow a sharp peak globally).
        temperature: τ of ``p(λ_j) = softmax_j(τ·f(λ_j))``.
        temperature_scale: ``raw`` (τ on the score's own scale, as the paper's τ = 100) or
            ``std`` (scores standardised over the candidates first, so τ means the same for any
            metric's spread).
        pending_radius: r of the local penalty :meth:`distribution` puts around λ still running
            (``pending``): a batch proposed before any of it reports spreads over the peak's
            neighbourhood instead of piling onto one point, yet stays where the fit is high.
        model_choice: ``fixed`` (``degree`` and ``alpha`` as given) or ``loo``: at each fit with at
            least ``model_choice_min_observations`` observations, the ridge model of
            :data:`CHOICE_DEGREES` × :data:`CHOICE_ALPHAS` (in ``basis``) with the lowest
            leave-one-out error; the fitted ``degree_``, ``alpha_`` and ``model_choice_`` say which.
        model_choice_min_observations: below this, ``loo`` keeps ``degree`` and ``alpha``.
        dimensions: names of the λ components (default ``lambda_1..lambda_d``).
        random_state: seed or Generator for candidate draws and :meth:`sample`.
    """

    def __init__(
        self,
        degree: int = DEFAULTS.degree,
        basis: str = DEFAULTS.basis,
        regression: str = DEFAULTS.regression,
        alpha: float = DEFAULTS.alpha,
        kappa: float = DEFAULTS.kappa,
        candidates=DEFAULTS.candidates,
        n_candidates: int = DEFAULTS.n_candidates,
        dirichlet_alpha: float = DEFAULTS.dirichlet_alpha,
        grid_resolution: int = DEFAULTS.grid_resolution,
        local_candidates: int = DEFAULTS.local_candidates,
        local_concentration: float = DEFAULTS.local_concentration,
        local_bandwidth: float | None = DEFAULTS.local_bandwidth,
        temperature: float = DEFAULTS.temperature,
        temperature_scale: str = DEFAULTS.temperature_scale,
        pending_radius: float = DEFAULTS.pending_radius,
        model_choice: str = DEFAULTS.model_choice,
        model_choice_min_observations: int = DEFAULTS.model_choice_min_observations,
        dimensions=None,
        random_state=None,
    ):
        self.degree = degree
        self.basis = basis
        self.regression = regression
        self.alpha = alpha
        self.kappa = kappa
        self.candidates = candidates
        self.n_candidates = n_candidates
        self.dirichlet_alpha = dirichlet_alpha
        self.grid_resolution = grid_resolution
        self.local_candidates = local_candidates
        self.local_concentration = local_concentration
        self.local_bandwidth = local_bandwidth
        self.temperature = temperature
        self.temperature_scale = temperature_scale
        self.pending_radius = pending_radius
        self.model_choice = model_choice
        self.model_choice_min_observations = model_choice_min_observations
        self.dimensions = dimensions
        self.random_state = random_state

    # --- fitting ------------------------------------------------------------------------

    def _validate_params(self) -> None:
        """:class:`LambdaSchedulerSettings` checks the settings (given candidates are checked when drawn)."""
        params = {item.name: getattr(self, item.name) for item in dataclasses.fields(LambdaSchedulerSettings)}
        if not isinstance(self.candidates, str):
            params["candidates"] = DEFAULTS.candidates
        elif self.candidates not in CANDIDATE_KINDS:
            raise ValueError(f"candidates must be one of {', '.join(CANDIDATE_KINDS)} or an array of λ; got {self.candidates!r}")
        LambdaSchedulerSettings(**params)

    def _validate_observations(self, lambdas, scores) -> tuple[np.ndarray, np.ndarray]:
        # C order whatever the caller's layout: BLAS sums in a layout-dependent order, and the same
        # observations must give the same coefficients to the last bit (a sweep's and the CLI's fit).
        lambdas = np.ascontiguousarray(lambdas, dtype=float)
        scores = np.ascontiguousarray(scores, dtype=float)
        if lambdas.ndim != 2 or lambdas.shape[0] == 0 or lambdas.shape[1] < 2:
            raise ValueError(f"lambdas must be [n, d] with n >= 1 and d >= 2, got shape {lambdas.shape}")
        if scores.shape != (lambdas.shape[0],):
            raise ValueError(f"scores must be [n] = [{lambdas.shape[0]}], got shape {scores.shape}")
        bad = np.flatnonzero(~np.isfinite(scores))
        if bad.size:
            raise ValueError(f"scores[{bad[0]}] is {scores[bad[0]]}: every observed score must be finite")
        validate_lambdas(lambdas, lambdas.shape[1], name="lambdas")
        if self.dimensions is not None and len(self.dimensions) != lambdas.shape[1]:
            raise ValueError(f"dimensions has {len(self.dimensions)} names but lambdas has {lambdas.shape[1]} columns")
        return lambdas, scores

    def _candidate_set(self, num_dimensions: int, rng: np.random.Generator) -> np.ndarray:
        if not isinstance(self.candidates, str):
            return validate_lambdas(np.asarray(self.candidates, dtype=float), num_dimensions, name="candidates")
        if self.candidates == "grid":
            return simplex_grid(num_dimensions, self.grid_resolution)
        return rng.dirichlet(np.full(num_dimensions, float(self.dirichlet_alpha)), size=self.n_candidates)

    def _near(self, centre: np.ndarray, size: int) -> np.ndarray:
        return self.rng_.dirichlet(self.local_concentration * centre + 0.1, size=size)

    def fit(self, lambdas, scores) -> "PolynomialScheduler":
        """Fit f(λ) to ``scores`` (``[n]``) observed at ``lambdas`` (``[n, d]``) and score the candidates."""
        self._validate_params()
        lambdas, scores = self._validate_observations(lambdas, scores)
        n, d = lambdas.shape
        if self.regression == "lstsq" and n < d:
            warnings.warn(
                f"lstsq with {n} observations for {d} dimensions: the minimum-norm fit cannot tell the "
                "dimensions apart; add observations (the m vertices and the centroid) or use ridge/bayesian",
                UserWarning,
                stacklevel=2,
            )
        self.rng_ = np.random.default_rng(self.random_state)
        self.dimensions_ = list(self.dimensions) if self.dimensions is not None else [f"lambda_{k + 1}" for k in range(d)]
        self.observed_lambdas_, self.observed_scores_ = lambdas, scores
        # Fitting centred scores keeps the level of the metric out of the penalty (ridge) and out
        # of the no-intercept Scheffé model; the mean is added back in predict.
        weights = self._observation_weights(lambdas, scores)
        self.degree_, self.alpha_, self.model_choice_ = self._choose_model(lambdas, scores, weights)
        self.powers_ = basis_powers(d, self.degree_, self.basis)
        self.offset_ = float(np.average(scores, weights=weights))
        features = polynomial_features(lambdas, self.powers_)
        self.coef_, self.coef_covariance_, self.noise_variance_ = self._regress(features, scores - self.offset_, weights, self.alpha_)
        self.candidates_ = self._candidate_set(d, self.rng_)
        self.candidate_scores_ = self.acquisition(self.candidates_)
        if self.local_candidates and isinstance(self.candidates, str):
            centres = (lambdas[np.argmax(scores)], self.candidates_[np.argmax(self.candidate_scores_)])
            local = np.vstack([self._near(centre, size) for centre, size in zip(centres, (self.local_candidates // 2, self.local_candidates - self.local_candidates // 2))])
            self.candidates_ = np.vstack([self.candidates_, local])
            self.candidate_scores_ = np.concatenate([self.candidate_scores_, self.acquisition(local)])
        self.probabilities_ = softmax(self.temperature * self._scaled(self.candidate_scores_))
        return self

    def _choose_model(self, lambdas: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> tuple[int, float, dict]:
        """``(degree, alpha, record)``: the settings' own model, or under ``model_choice: loo`` the
        one with the lowest leave-one-out RMSE (the settings' own first, so it wins a tie)."""
        if self.model_choice == "fixed":
            return self.degree, self.alpha, {"by": "fixed"}
        if len(scores) < self.model_choice_min_observations:
            return self.degree, self.alpha, {"by": f"fixed below {self.model_choice_min_observations} observations"}
        options = [(self.degree, self.alpha), *((p, a) for p in CHOICE_DEGREES for a in CHOICE_ALPHAS if (p, a) != (self.degree, self.alpha))]
        errors = {}
        for degree, alpha in options:
            features = polynomial_features(lambdas, basis_powers(lambdas.shape[1], degree, self.basis))
            errors[degree, alpha] = float(np.sqrt(np.mean(ridge_leave_one_out_errors(features, scores, weights, alpha) ** 2)))
        degree, alpha = min(errors, key=errors.get)
        return degree, alpha, {"by": "loo", "loo_rmse": errors[degree, alpha], "loo_rmse_of_settings": errors[self.degree, self.alpha]}

    def _observation_weights(self, lambdas: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self.local_bandwidth is None:
            return np.ones(len(scores))
        distance = np.linalg.norm(lambdas - lambdas[np.argmax(scores)], axis=1)
        return np.exp(-0.5 * (distance / self.local_bandwidth) ** 2)

    def _regress(self, features: np.ndarray, targets: np.ndarray, weights: np.ndarray, alpha: float):
        """``(coefficients, their covariance or None, noise variance or None)`` of this regression (``alpha``: ridge's)."""
        if self.regression == "lstsq":
            root = np.sqrt(weights)[:, None]
            coef, *_ = np.linalg.lstsq(features * root, targets * root[:, 0], rcond=None)  # minimum-norm when rank-deficient
            return coef, None, None
        if self.regression == "ridge":
            return Ridge(alpha=alpha, fit_intercept=False).fit(features, targets, sample_weight=weights).coef_, None, None
        model = BayesianRidge(fit_intercept=False).fit(features, targets, sample_weight=weights)
        return model.coef_, model.sigma_, 1.0 / model.alpha_

    def _scaled(self, values: np.ndarray) -> np.ndarray:
        if self.temperature_scale == "raw":
            return values
        spread = values.std()
        return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)

    # --- using the fit ------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("this PolynomialScheduler is not fitted yet: call fit(lambdas, scores) first")

    @property
    def n_features_(self) -> int:
        self._check_fitted()
        return len(self.powers_)

    def predict(self, lambdas, return_std: bool = False):
        """Predicted score at ``[n, d]`` λ; with ``return_std`` also the predictive std (bayesian only)."""
        self._check_fitted()
        lambdas = validate_lambdas(np.atleast_2d(np.asarray(lambdas, dtype=float)), len(self.dimensions_), name="lambdas")
        features = polynomial_features(lambdas, self.powers_)
        mean = self.offset_ + features @ self.coef_
        if not return_std:
            return mean
        if self.coef_covariance_ is None:
            raise ValueError(f"regression {self.regression!r} gives no predictive std; use regression='bayesian'")
        variance = np.einsum("nf,fg,ng->n", features, self.coef_covariance_, features) + self.noise_variance_
        return mean, np.sqrt(np.maximum(variance, 0.0))

    def acquisition(self, lambdas) -> np.ndarray:
        """The score the distribution is built on: the mean, plus ``kappa·std`` for bayesian."""
        if self.regression == "bayesian":
            mean, std = self.predict(lambdas, return_std=True)
            return mean + self.kappa * std
        return self.predict(lambdas)

    def distribution(self, pending=None) -> tuple[np.ndarray, np.ndarray]:
        """``(candidates [K, d], probabilities [K])``; with ``pending`` (``[k, d]`` λ still running)
        each probability is scaled by ``Π_i 1 − exp(−½(‖λ − pending_i‖ / pending_radius)²)`` and
        renormalised (local penalisation, docs/lambda-scheduler.md)."""
        self._check_fitted()
        pending = np.zeros((0, self.candidates_.shape[1])) if pending is None else np.asarray(pending, dtype=float).reshape(-1, self.candidates_.shape[1])
        if not len(pending) or self.pending_radius == 0:
            return self.candidates_, self.probabilities_
        distance = np.linalg.norm(self.candidates_[:, None, :] - pending[None, :, :], axis=-1)
        penalised = self.probabilities_ * np.prod(1.0 - np.exp(-0.5 * (distance / self.pending_radius) ** 2), axis=1)
        total = penalised.sum()
        return self.candidates_, (penalised / total if total > 0 else self.probabilities_)

    def sample(self, n: int = 1, random_state=None) -> np.ndarray:
        """``[n, d]`` λ drawn from the distribution (the fitted generator unless a seed is given)."""
        self._check_fitted()
        rng = self.rng_ if random_state is None else np.random.default_rng(random_state)
        return self.candidates_[rng.choice(len(self.candidates_), size=n, p=self.probabilities_)]

    def best_candidate(self) -> np.ndarray:
        self._check_fitted()
        return self.candidates_[int(np.argmax(self.candidate_scores_))]

    # --- persistence --------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Everything needed to predict and sample again, plus the observations it was fitted on."""
        self._check_fitted()
        params = {k: v for k, v in self.get_params().items() if k not in ("candidates", "random_state", "dimensions")}
        params["candidates"] = self.candidates if isinstance(self.candidates, str) else "given"
        params["random_state"] = self.random_state if isinstance(self.random_state, (int, type(None))) else None
        return {
            "format": SCHEDULE_FORMAT,
            "version": SCHEDULE_VERSION,
            "dimensions": self.dimensions_,
            "candidates": self.candidates_.tolist(),
            "probabilities": self.probabilities_.tolist(),
            "candidate_scores": self.candidate_scores_.tolist(),
            "lambda_scheduler": params,
            "model": {
                "basis": self.basis,
                "degree": self.degree_,
                "alpha": self.alpha_,
                "choice": self.model_choice_,
                "feature_names": feature_names(self.powers_, self.dimensions_),
                "powers": self.powers_.tolist(),
                "offset": self.offset_,
                "coefficients": self.coef_.tolist(),
                "coefficient_covariance": None if self.coef_covariance_ is None else self.coef_covariance_.tolist(),
                "noise_variance": self.noise_variance_,
            },
            "observations": {"lambdas": self.observed_lambdas_.tolist(), "scores": self.observed_scores_.tolist()},
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The schedule JSON (the format the ``scheduled`` λ sampler reads); written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, payload: dict, *, source: str = "schedule") -> "PolynomialScheduler":
        schedule = parse_schedule(payload, source=source)
        try:
            return cls._fitted_from(payload, schedule)
        except KeyError as error:
            raise ValueError(f"{source}: a fitted schedule needs the key {error.args[0]!r}, which is missing") from None
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: a fitted schedule's settings or model are malformed ({error})") from None

    @classmethod
    def _fitted_from(cls, payload: dict, schedule) -> "PolynomialScheduler":
        params = dict(payload["scheduler" if "scheduler" in payload else "lambda_scheduler"])  # "scheduler": schedules before the rename
        if params.get("candidates") == "given":
            params["candidates"] = schedule.candidates
        scheduler = cls(**params, dimensions=list(schedule.dimensions))
        model, observations = payload["model"], payload["observations"]
        scheduler.rng_ = np.random.default_rng(scheduler.random_state)
        scheduler.dimensions_ = list(schedule.dimensions)
        scheduler.powers_ = np.asarray(model["powers"], dtype=int)
        # .get: schedules written before model_choice existed had the settings' own degree and alpha
        scheduler.degree_, scheduler.alpha_ = int(model.get("degree", scheduler.degree)), float(model.get("alpha", scheduler.alpha))
        scheduler.model_choice_ = dict(model.get("choice", {"by": "fixed"}))
        scheduler.offset_ = float(model["offset"])
        scheduler.coef_ = np.asarray(model["coefficients"], dtype=float)
        covariance = model.get("coefficient_covariance")
        scheduler.coef_covariance_ = None if covariance is None else np.asarray(covariance, dtype=float)
        scheduler.noise_variance_ = model.get("noise_variance")
        scheduler.observed_lambdas_ = np.asarray(observations["lambdas"], dtype=float)
        scheduler.observed_scores_ = np.asarray(observations["scores"], dtype=float)
        scheduler.candidates_ = schedule.candidates
        scheduler.probabilities_ = schedule.probabilities
        scheduler.candidate_scores_ = np.asarray(payload["candidate_scores"], dtype=float)
        return scheduler

    @classmethod
    def from_json(cls, source: str | Path) -> "PolynomialScheduler":
        """Read a scheduler from a schedule JSON file path, or from JSON text."""
        if isinstance(source, str) and source.lstrip().startswith("{"):
            return cls.from_dict(json.loads(source))
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"schedule file not found: {path}")
        try:
            payload = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        return cls.from_dict(payload, source=str(path))


__all__ = ["DEFAULTS", "PRESETS", "effective_sample_size", "PolynomialScheduler", "LambdaSchedulerSettings", "basis_powers", "polynomial_features", "simplex_grid", "softmax"]
