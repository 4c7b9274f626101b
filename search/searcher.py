"""Ray Tune searchers over the λ simplex: thin adapters whose maths lives elsewhere.

``PolynomialLambdaSearcher`` is ours: it suggests the starting design (the centroid and the m
points halfway to each vertex, the paper's vertices and centroid, or points the user gives), then refits :class:`~search.lambda_scheduler.PolynomialScheduler`
on every completed trial and draws the next λ from its softmax distribution, never within
``tolerance`` of a λ already running, finished or errored. ``RandomLambdaSearcher`` (Dirichlet)
and ``GridLambdaSearcher`` (the simplex lattice) share the bookkeeping, so the three compare
like for like; Optuna comes in through :func:`optuna_searcher` (Ray's ``OptunaSearch``).

A trial's config is ``{"lambda": {dimension: weight}}``; its result must carry ``metric``.
Everything a searcher knows is saved as JSON by ``save`` and read back by ``restore``, so a
``Tuner.restore`` loses no observation. The searchers also run without Ray around them: drive
``suggest`` / ``on_trial_complete`` by hand (the unit tests and the search benchmark do).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from ray.tune.search import Searcher

from lambda_dpo.lambdas import validate_lambda, validate_lambdas
from search.lambda_scheduler import PolynomialScheduler, simplex_grid

logger = logging.getLogger(__name__)

LAMBDA_KEY = "lambda"
EVALUATED_STEP = "evaluated_step"  # a trial result's key: the training step of its latest held-out evaluation
STATE_FORMAT = "lambda-dpo-searcher/1"


DESIGNS = ("axial", "vertices")
DEFAULT_DESIGN = "axial"  # chosen on the search benchmark's tuning seeds (benchmarks/README.md)


def starting_design(num_dimensions: int, kind: str = DEFAULT_DESIGN) -> np.ndarray:
    """The first λ a polynomial search runs, before it has anything to fit.

    axial: the centroid, then the m points halfway from it to each vertex. Inside the simplex,
        where good λ usually are; found good λ sooner than the vertices on the search benchmark.
    vertices: the m vertices (one objective each), then the centroid: the paper's five points for m = 4.
    """
    centroid = np.full((1, num_dimensions), 1.0 / num_dimensions)
    if kind == "axial":
        return np.vstack([centroid, 0.5 * centroid + 0.5 * np.eye(num_dimensions)])
    if kind == "vertices":
        return np.vstack([np.eye(num_dimensions), centroid])
    raise ValueError(f"design must be one of {', '.join(DESIGNS)}; got {kind!r}")


def lambda_from_uniforms(uniforms: Sequence[float]) -> np.ndarray:
    """λ_k = e_k / Σe with e_k = −log u_k: independent U(0, 1] give λ ~ Dir(1), so a searcher that
    works on a box (Optuna) covers the simplex without favouring its centre."""
    exponentials = -np.log(np.clip(np.asarray(uniforms, dtype=float), 1e-12, 1.0))
    total = exponentials.sum()
    if total <= 0:  # every u = 1: no direction preferred
        return np.full(len(exponentials), 1.0 / len(exponentials))
    return exponentials / total


def trial_lambda(config: dict, dimensions: Sequence[str]) -> np.ndarray:
    """The λ of a trial config ``{"lambda": {dimension: weight}}``, validated."""
    weights = config.get(LAMBDA_KEY)
    if not isinstance(weights, dict):
        raise ValueError(f"trial config has no {LAMBDA_KEY!r} mapping of dimension → weight: {config}")
    missing = [d for d in dimensions if d not in weights]
    if missing:
        raise ValueError(f"trial config's λ lacks dimension(s) {missing}: {weights}")
    return validate_lambda([weights[d] for d in dimensions], len(dimensions), name="trial λ")


def lambda_config(weights: np.ndarray, dimensions: Sequence[str]) -> dict:
    return {LAMBDA_KEY: {d: float(w) for d, w in zip(dimensions, weights)}}


class LambdaSearcher(Searcher):
    """Bookkeeping shared by our λ searchers: the design, live and finished trials, the budget,
    errors, deduplication and JSON state. Subclasses say how to ``propose`` the next λ.

    dimensions: the preference dimensions, in the order of λ.
    metric / mode: the result key the search maximises (``mode="max"``) or minimises. They are
        set here, not by Tune, because ``Tuner.restore`` does not pass them again.
    num_trials: the budget; ``suggest`` returns ``FINISHED`` once that many λ were handed out.
    initial_points: λ rows suggested first (default: the subclass's design).
    tolerance: a proposal within this max-norm distance of a λ already running, finished or
        errored is not suggested again.
    final_step: with early stopping (ASHA), the step of a finished trial's final evaluation. A
        trial that completes with an earlier ``evaluated_step`` was stopped: its λ is taken, and
        its score is kept apart from the final ones (:meth:`observed` says how it is used).
    """

    def __init__(
        self,
        dimensions: Sequence[str],
        *,
        metric: str = "objective",
        mode: str = "max",
        num_trials: int = 8,
        initial_points: Optional[Sequence[Sequence[float]]] = None,
        tolerance: float = 0.02,
        final_step: Optional[int] = None,
        random_state: Optional[int] = None,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if num_trials <= 0:
            raise ValueError(f"num_trials must be positive, got {num_trials}")
        if tolerance < 0:
            raise ValueError(f"tolerance must be ≥ 0, got {tolerance}")
        super().__init__(metric=metric, mode=mode)
        self.dimensions = list(dimensions)
        self.num_trials = num_trials
        self.tolerance = tolerance
        self.final_step = final_step
        m = len(self.dimensions)
        design = self.default_design(m) if initial_points is None else np.asarray(initial_points, dtype=float).reshape(-1, m)
        self.design = validate_lambdas(design, m, name="initial_points") if len(design) else design.reshape(0, m)
        self.rng = np.random.default_rng(random_state)
        self.live: dict[str, list[float]] = {}
        self.observations: list[dict] = []  # {"trial_id", "lambda", "score"} in completion order
        self.errored: list[dict] = []  # {"trial_id", "lambda", "reason"}
        self.stopped: list[dict] = []  # {"trial_id", "lambda", "step", "score"}: stopped early, score not final
        self.curves: dict[str, dict[str, float]] = {}  # trial → {evaluated step: objective} (with final_step)
        self.num_suggested = 0

    # --------------------------------------------------------------- what subclasses provide

    def default_design(self, num_dimensions: int) -> np.ndarray:
        return np.zeros((0, num_dimensions))

    def propose(self) -> Optional[np.ndarray]:
        """The next λ after the design, or None when this searcher has nothing more to offer."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The subclass's own parameters, JSON-able, saved with the state."""
        return {}

    def apply_settings(self, settings: dict) -> None:
        pass

    # --------------------------------------------------------------- Tune's Searcher interface

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        # The search space is ours (the simplex); accept Tune's metric/mode only if they agree.
        if metric is not None and metric != self.metric or mode is not None and mode != self.mode:
            return False
        return True

    def suggest(self, trial_id: str):
        if trial_id in self.live:  # asked again for a trial it already placed
            return lambda_config(np.asarray(self.live[trial_id]), self.dimensions)
        if self.num_suggested >= self.num_trials:
            return Searcher.FINISHED
        weights = self.design[self.num_suggested] if self.num_suggested < len(self.design) else self.propose()
        if weights is None:
            return Searcher.FINISHED
        self.num_suggested += 1
        self.live[trial_id] = [float(w) for w in weights]
        return lambda_config(weights, self.dimensions)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """With early stopping, each held-out evaluation is kept: the learning curves that put a
        stopped trial's score on the final scale."""
        score, step = result.get(self.metric), result.get(EVALUATED_STEP)
        if self.final_step is not None and step and score is not None and math.isfinite(float(score)):
            self.curves.setdefault(trial_id, {})[str(int(step))] = float(score)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        weights = self.live.pop(trial_id, None)
        if weights is None:
            logger.warning("searcher: completion of unknown trial %s ignored", trial_id)
            return
        score = None if error or not result else result.get(self.metric)
        if score is None or not math.isfinite(float(score)):
            reason = "error" if error else f"result without a finite {self.metric!r}"
            self.errored.append({"trial_id": trial_id, "lambda": weights, "reason": reason})
            return
        step = result.get(EVALUATED_STEP)
        if self.final_step is not None and step is not None and int(step) < self.final_step:
            self.stopped.append({"trial_id": trial_id, "lambda": weights, "step": int(step), "score": float(score)})
            return
        self.observations.append({"trial_id": trial_id, "lambda": weights, "score": float(score)})

    def add_evaluated_point(self, parameters: dict, value: float, error: bool = False, pruned: bool = False, intermediate_values=None) -> None:
        """Tune's way in for a trial run elsewhere (``searcher.warm_start``: an earlier sweep's
        rows): it becomes an observation, its λ counts as taken, and a starting-design point it
        covers is not run again. Only before the first suggestion, so the design stays in step."""
        if self.num_suggested:
            raise RuntimeError("evaluated points can only be added before the first suggestion")
        weights = [float(w) for w in trial_lambda(parameters, self.dimensions)]
        trial_id = f"warm-start-{len(self.observations) + len(self.errored)}"
        if error or pruned or value is None or not math.isfinite(float(value)):
            self.errored.append({"trial_id": trial_id, "lambda": weights, "reason": "error" if error else "pruned" if pruned else "no finite score"})
        else:
            self.observations.append({"trial_id": trial_id, "lambda": weights, "score": float(value)})
        self.design = self.design[~self.is_taken(self.design)] if len(self.design) else self.design

    # --------------------------------------------------------------- what the searcher knows

    def observed(self) -> tuple[np.ndarray, np.ndarray]:
        """``(λ [n, m], scores [n])`` to fit: the finished trials in completion order, then each
        early-stopped trial whose score can be put on the final scale (:meth:`projected_final`)."""
        rows = [(o["lambda"], o["score"]) for o in self.observations]
        rows += [(s["lambda"], final) for s in self.stopped if (final := self.projected_final(s)) is not None]
        lambdas = np.array([weights for weights, _ in rows], dtype=float).reshape(-1, len(self.dimensions))
        return lambdas, np.array([score for _, score in rows], dtype=float)

    def projected_final(self, stopped: dict) -> Optional[float]:
        """A stopped trial's score at step s, shifted by the median gain from step s to the end of
        the finished trials evaluated at s (learning curves assumed parallel); None while no
        finished trial was evaluated at s: such a score is not fitted as if it were final."""
        gains = [o["score"] - curve[str(stopped["step"])] for o in self.observations if str(stopped["step"]) in (curve := self.curves.get(o["trial_id"], {}))]
        return stopped["score"] + float(np.median(gains)) if gains else None

    def taken(self) -> np.ndarray:
        """Every λ already running, finished, stopped early or errored."""
        rows = [*self.live.values(), *(o["lambda"] for o in self.observations), *(s["lambda"] for s in self.stopped), *(e["lambda"] for e in self.errored)]
        return np.array(rows, dtype=float).reshape(-1, len(self.dimensions))

    def is_taken(self, candidates: np.ndarray) -> np.ndarray:
        """``[k]`` bool: each candidate is within ``tolerance`` (max-norm) of a taken λ."""
        taken = self.taken()
        if not len(taken):
            return np.zeros(len(candidates), dtype=bool)
        distance = np.abs(candidates[:, None, :] - taken[None, :, :]).max(axis=-1)
        return (distance <= self.tolerance).any(axis=1)

    def fresh_dirichlet(self, attempts: int = 1000) -> np.ndarray:
        """A Dir(1) draw not within ``tolerance`` of a taken λ (the last draw if none is)."""
        for _ in range(attempts):
            draw = self.rng.dirichlet(np.ones(len(self.dimensions)))
            if not self.is_taken(draw[None])[0]:
                return draw
        logger.warning("searcher: no untaken λ in %d Dirichlet draws; suggesting a near-duplicate", attempts)
        return draw

    # --------------------------------------------------------------- state

    def get_state(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "searcher": type(self).__name__,
            "dimensions": self.dimensions,
            "metric": self.metric,
            "mode": self.mode,
            "num_trials": self.num_trials,
            "tolerance": self.tolerance,
            "final_step": self.final_step,
            "design": self.design.tolist(),
            "live": self.live,
            "observations": self.observations,
            "errored": self.errored,
            "stopped": self.stopped,
            "curves": self.curves,
            "num_suggested": self.num_suggested,
            "rng": self.rng.bit_generator.state,
            "settings": self.settings(),
        }

    def set_state(self, state: dict) -> None:
        if state.get("format") != STATE_FORMAT or state.get("searcher") != type(self).__name__:
            raise ValueError(f"not a {type(self).__name__} state: format {state.get('format')!r}, searcher {state.get('searcher')!r}")
        self.dimensions = list(state["dimensions"])
        self._metric, self._mode = state["metric"], state["mode"]
        self.num_trials, self.tolerance = state["num_trials"], state["tolerance"]
        self.design = np.asarray(state["design"], dtype=float).reshape(-1, len(self.dimensions))
        self.live = {k: list(v) for k, v in state["live"].items()}
        self.observations, self.errored = list(state["observations"]), list(state["errored"])
        self.final_step = state.get("final_step")  # .get: states saved before early stopping existed
        self.stopped, self.curves = list(state.get("stopped", [])), dict(state.get("curves", {}))
        self.num_suggested = state["num_suggested"]
        self.rng.bit_generator.state = state["rng"]
        self.apply_settings(state["settings"])

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(self.get_state(), indent=1))

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(json.loads(Path(checkpoint_path).read_text()))


class PolynomialLambdaSearcher(LambdaSearcher):
    """The λ scheduler as a Tune searcher: refit on every completed trial, sample the next λ.

    lambda_scheduler: an unfitted :class:`PolynomialScheduler` whose parameters are used for every
        fit (its ``dimensions`` and ``random_state`` are set by the searcher).
    design: the starting design's kind (:func:`starting_design`) when no ``initial_points`` are given.
    """

    def __init__(self, dimensions: Sequence[str], *, lambda_scheduler: Optional[PolynomialScheduler] = None, design: str = DEFAULT_DESIGN, **kwargs):
        self.design_kind = design
        super().__init__(dimensions, **kwargs)
        self.lambda_scheduler = lambda_scheduler if lambda_scheduler is not None else PolynomialScheduler()
        self.model_choice: Optional[dict] = None  # the last fit's model (degree, alpha, how chosen), kept with the state

    def get_state(self) -> dict:
        return {**super().get_state(), "model_choice": self.model_choice}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.model_choice = state.get("model_choice")  # .get: states saved before model_choice existed

    def default_design(self, num_dimensions: int) -> np.ndarray:
        return starting_design(num_dimensions, self.design_kind)

    def settings(self) -> dict:
        params = self.lambda_scheduler.get_params()
        if isinstance(params["candidates"], np.ndarray):
            params["candidates"] = params["candidates"].tolist()
        return {"lambda_scheduler": {k: v for k, v in params.items() if k not in ("dimensions", "random_state")}, "design": self.design_kind}

    def apply_settings(self, settings: dict) -> None:
        params = dict(settings["scheduler" if "scheduler" in settings else "lambda_scheduler"])  # "scheduler": states before the rename
        if isinstance(params["candidates"], list):
            params["candidates"] = np.asarray(params["candidates"], dtype=float)
        self.lambda_scheduler = PolynomialScheduler(**params)
        self.design_kind = settings.get("design", "vertices")  # states saved before the axial design existed used the vertices

    def fit(self) -> Optional[PolynomialScheduler]:
        """The λ scheduler fitted on :meth:`observed` (scores negated when minimising)."""
        lambdas, scores = self.observed()
        if len(scores) < 2:
            return None
        sign = 1.0 if self.mode == "max" else -1.0
        params = dict(self.lambda_scheduler.get_params(), dimensions=self.dimensions, random_state=int(self.rng.integers(2**31)))
        fitted = PolynomialScheduler(**params).fit(lambdas, sign * scores)
        self.model_choice = {"degree": fitted.degree_, "alpha": fitted.alpha_, **fitted.model_choice_}
        return fitted

    def propose(self) -> np.ndarray:
        fitted = self.fit()
        if fitted is None:  # nothing to regress on yet
            return self.fresh_dirichlet()
        candidates, probabilities = fitted.distribution(pending=list(self.live.values()))
        probabilities = np.where(self.is_taken(candidates), 0.0, probabilities)
        if probabilities.sum() <= 0:
            return self.fresh_dirichlet()
        return candidates[self.rng.choice(len(candidates), p=probabilities / probabilities.sum())]


class RandomLambdaSearcher(LambdaSearcher):
    """λ ~ Dir(α) for every trial: the baseline a user already has."""

    def __init__(self, dimensions: Sequence[str], *, dirichlet_alpha: float = 1.0, **kwargs):
        if dirichlet_alpha <= 0:
            raise ValueError(f"dirichlet_alpha must be > 0, got {dirichlet_alpha}")
        self.dirichlet_alpha = dirichlet_alpha
        super().__init__(dimensions, **kwargs)

    def propose(self) -> np.ndarray:
        return self.rng.dirichlet(np.full(len(self.dimensions), self.dirichlet_alpha))

    def settings(self) -> dict:
        return {"dirichlet_alpha": self.dirichlet_alpha}

    def apply_settings(self, settings: dict) -> None:
        self.dirichlet_alpha = settings["dirichlet_alpha"]


class GridLambdaSearcher(LambdaSearcher):
    """Every point of the simplex lattice with ``resolution`` steps per side, in lattice order."""

    def __init__(self, dimensions: Sequence[str], *, resolution: int = 2, **kwargs):
        if resolution < 1:
            raise ValueError(f"grid resolution must be ≥ 1, got {resolution}")
        self.resolution = resolution
        super().__init__(dimensions, **kwargs)

    def default_design(self, num_dimensions: int) -> np.ndarray:
        return simplex_grid(num_dimensions, self.resolution)

    def propose(self) -> None:
        return None  # the lattice is the whole search

    def settings(self) -> dict:
        return {"resolution": self.resolution}

    def apply_settings(self, settings: dict) -> None:
        self.resolution = settings["resolution"]


def optuna_searcher(dimensions: Sequence[str], *, metric: str, mode: str, sampler: str = "tpe", seed: Optional[int] = None, initial_points=None):
    """Ray's ``OptunaSearch`` over λ as normalised exponentials of uniforms (``u/<dimension>``).

    sampler: ``tpe`` (Optuna's default) or ``gp`` (``GPSampler``). ``initial_points`` are given to
    Optuna as its first trials, in ``u`` coordinates that map back onto them.
    """
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    samplers = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler}
    if sampler not in samplers:
        raise ValueError(f"optuna sampler must be one of {', '.join(samplers)}; got {sampler!r}")
    dimensions = list(dimensions)
    points = None
    if initial_points is not None:
        # u = exp(−λ) maps λ back onto itself (e = λ, Σe = 1); u ≤ 1 always.
        points = [{f"u/{d}": float(np.exp(-w)) for d, w in zip(dimensions, row)} for row in np.asarray(initial_points, dtype=float)]
    return OptunaSearch(space=UniformsSpace(dimensions), metric=metric, mode=mode, sampler=samplers[sampler](seed=seed), points_to_evaluate=points)


class UniformsSpace:
    """Optuna's define-by-run space: one U(0, 1] per dimension, the trial's λ from them.
    A class, not a closure, because Tune pickles the searcher with the experiment."""

    def __init__(self, dimensions: Sequence[str]):
        self.dimensions = list(dimensions)

    def __call__(self, trial) -> dict:
        uniforms = [trial.suggest_float(f"u/{d}", 1e-6, 1.0) for d in self.dimensions]
        return lambda_config(lambda_from_uniforms(uniforms), self.dimensions)
