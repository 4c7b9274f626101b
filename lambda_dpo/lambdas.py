"""λ samplers on the preference simplex (docs/method.md, "λ samplers") and the schedule file.

Every sampler draws ``[n, m]`` λ from a numpy Generator. :func:`lambdas_for_examples` gives
each example its own generator seeded by ``(seed, epoch, example key)``, so an example's λ does
not depend on batch order, batch size, the number of data-parallel workers or a resume.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Protocol, Sequence

import numpy as np

from lambda_dpo.config import NON_NEGATIVE, POSITIVE, Interval, check_settings, setting

SIMPLEX_TOLERANCE = 1e-6
SCHEDULE_FORMAT = "lambda-dpo/schedule"
SCHEDULE_VERSION = 1


def validate_lambda(values: Sequence[float] | np.ndarray, num_dimensions: int, *, name: str = "lambda") -> np.ndarray:
    """Return ``values`` as a float array after checking it is a point of the m-simplex.

    Raises ValueError naming ``name`` and the problem: wrong length, non-finite or negative
    components, or a sum that is not 1 within 1e-6.
    """
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {num_dimensions} numbers, got {preview(values)}") from None
    if array.ndim != 1 or array.shape[0] != num_dimensions:
        raise ValueError(f"{name} must have {num_dimensions} components (one per dimension), got {preview(array.tolist())}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has non-finite components: {offending(array, ~np.isfinite(array))}")
    if np.any(array < 0):
        raise ValueError(f"{name} has negative components: {offending(array, array < 0)}")
    total = float(array.sum())
    if abs(total - 1.0) > SIMPLEX_TOLERANCE:
        raise ValueError(f"{name} sums to {total:.9g}, must sum to 1 (within {SIMPLEX_TOLERANCE:g}): {preview(array.tolist())}")
    return array


SHOWN_ENTRIES = 6  # an error about a 2,000-entry array shows this many, and a count


def preview(values) -> str:
    """``values`` for an error message: all of a short list, else its first entries and its length."""
    if isinstance(values, (list, tuple)) and len(values) > SHOWN_ENTRIES:
        return f"[{', '.join(map(str, values[:SHOWN_ENTRIES]))}, …] ({len(values)} entries)"
    return repr(values) if isinstance(values, str) else str(values)


def offending(array: np.ndarray, bad: np.ndarray) -> str:
    """The bad entries of ``array`` as ``[index]=value`` (the first few, and how many in all)."""
    where = np.flatnonzero(bad)
    if len(array) <= SHOWN_ENTRIES:
        return str(array.tolist())
    shown = ", ".join(f"[{i}]={array[i]:g}" for i in where[:SHOWN_ENTRIES])
    return shown + (f", … ({len(where)} of {len(array)} entries)" if len(where) > SHOWN_ENTRIES else f" ({len(where)} of {len(array)} entries)")


def validate_lambdas(rows: np.ndarray, num_dimensions: int, *, name: str = "lambdas") -> np.ndarray:
    """Check every row of ``rows`` (``[n, m]``) is on the simplex; errors name the first bad row."""
    array = np.asarray(rows, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n, {num_dimensions}], got shape {array.shape}")
    if array.shape[1:] == (num_dimensions,):
        finite = np.isfinite(array).all(axis=1)
        good = finite & (array >= 0).all(axis=1) & (np.abs(array.sum(axis=1) - 1.0) <= SIMPLEX_TOLERANCE)
        if good.all():  # the common case, checked at once (the scheduler validates thousands of candidates)
            return array
    for index, row in enumerate(array):  # the first bad row, named with its problem
        validate_lambda(row, num_dimensions, name=f"{name}[{index}]")
    return array


def parse_numbers(text: str, *, name: str = "lambda") -> list[float]:
    """``"0.7,0.1,0.1,0.1"`` → ``[0.7, 0.1, 0.1, 0.1]`` (not yet validated as a λ)."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError as error:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from error


class LambdaSampler(Protocol):
    num_dimensions: int

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``[n, m]`` λ on the simplex."""


@dataclass(frozen=True)
class FixedSampler:
    """Always the given λ."""

    weights: np.ndarray

    @property
    def num_dimensions(self) -> int:
        return len(self.weights)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.tile(self.weights, (n, 1))


def uniform_sampler(num_dimensions: int) -> FixedSampler:
    """The centroid ``1/m`` (the paper's "uniform λ")."""
    return FixedSampler(np.full(num_dimensions, 1.0 / num_dimensions))


@dataclass(frozen=True)
class DirichletSampler:
    """λ ~ Dir(α); α = 1 is uniform on the simplex."""

    alpha: np.ndarray

    @property
    def num_dimensions(self) -> int:
        return len(self.alpha)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.dirichlet(self.alpha, size=n)


@dataclass(frozen=True)
class GaussianSampler:
    """z ~ N(0, σ²I), λ = softmax(z): the paper's "Gaussian λ", made precise."""

    num_dimensions: int
    sigma: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        z = rng.normal(0.0, self.sigma, size=(n, self.num_dimensions))
        z -= z.max(axis=1, keepdims=True)
        weights = np.exp(z)
        return weights / weights.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class VerticesSampler:
    """One-hot λ: a uniformly drawn dimension per example, or always ``vertex`` when given."""

    num_dimensions: int
    vertex: Optional[int] = None

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.vertex is None:
            picks = rng.integers(0, self.num_dimensions, size=n)
        else:
            picks = np.full(n, self.vertex)
        return np.eye(self.num_dimensions)[picks]


@dataclass(frozen=True)
class Schedule:
    """The part of a scheduler's JSON that a sampler needs: candidates and their probabilities."""

    dimensions: tuple[str, ...]
    candidates: np.ndarray  # [K, m]
    probabilities: np.ndarray  # [K]
    payload: dict = field(default_factory=dict, compare=False, repr=False)


def parse_schedule(payload: dict, *, source: str = "schedule") -> Schedule:
    """Validate the shared keys of a schedule JSON document (one format for writer and readers)."""
    if not isinstance(payload, dict):
        raise ValueError(f"{source}: not a lambda-dpo schedule (a JSON {type(payload).__name__}, expected an object)")
    if payload.get("format") != SCHEDULE_FORMAT:
        raise ValueError(f"{source}: not a lambda-dpo schedule (format is {payload.get('format')!r}, expected {SCHEDULE_FORMAT!r})")
    if payload.get("version") != SCHEDULE_VERSION:
        raise ValueError(f"{source}: schedule version {payload.get('version')!r} is not supported (expected {SCHEDULE_VERSION})")
    for key in ("dimensions", "candidates", "probabilities"):
        if key not in payload:
            raise ValueError(f"{source}: missing key {key!r}")
    if not isinstance(payload["dimensions"], list) or not all(isinstance(name, str) for name in payload["dimensions"]):
        raise ValueError(f"{source}: dimensions must be a list of names, got {preview(payload['dimensions'])}")
    dimensions = tuple(payload["dimensions"])
    try:
        candidates, probabilities = (np.asarray(payload[key], dtype=float) for key in ("candidates", "probabilities"))
    except (TypeError, ValueError):
        raise ValueError(f"{source}: candidates must be a list of λ (lists of {len(dimensions)} numbers) and probabilities a list of numbers") from None
    candidates = validate_lambdas(candidates, len(dimensions), name=f"{source}: candidates")
    if probabilities.shape != (len(candidates),):
        raise ValueError(f"{source}: {len(candidates)} candidates but {probabilities.shape[0] if probabilities.ndim else 0} probabilities")
    validate_lambda(probabilities, len(candidates), name=f"{source}: probabilities")
    return Schedule(dimensions, candidates, probabilities, payload)


def read_schedule(path: str | Path) -> Schedule:
    """Read a schedule JSON written by ``search.lambda_scheduler.PolynomialScheduler.to_json``."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"schedule file not found: {path}") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    return parse_schedule(payload, source=str(path))


@dataclass(frozen=True)
class ScheduledSampler:
    """λ drawn from a categorical over a fitted schedule's candidates."""

    candidates: np.ndarray
    probabilities: np.ndarray

    @property
    def num_dimensions(self) -> int:
        return self.candidates.shape[1]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        picks = rng.choice(len(self.candidates), size=n, p=self.probabilities)
        return self.candidates[picks]


@dataclass(frozen=True)
class AnchoredSampler:
    """The anchor λ for a ``share`` of the examples, a draw from ``base`` for the rest.

    For a λ-conditioned policy: the anchor is where it will mostly be used (the centroid by
    default), so it is trained there often, while the draws keep it steerable elsewhere.
    """

    base: LambdaSampler
    anchor: np.ndarray
    share: float

    @property
    def num_dimensions(self) -> int:
        return self.base.num_dimensions

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        draws = self.base.sample(rng, n)
        draws[rng.uniform(size=n) < self.share] = self.anchor
        return draws


SAMPLERS = ("fixed", "uniform", "dirichlet", "gaussian", "vertices", "scheduled")
ANCHORABLE = ("dirichlet", "gaussian", "vertices")


@dataclass
class LambdaConfig:
    """How λ is chosen for each training example."""

    sampler: str = setting("dirichlet", help='one of SAMPLERS', choices=SAMPLERS)
    weights: Optional[List[float]] = setting(None, help='the λ of `fixed`; the mean of `dirichlet` when given')
    dirichlet_alpha: float = setting(1.0, within=POSITIVE, help='concentration of `dirichlet` per dimension at the centroid (1 = uniform on the simplex)')
    gaussian_sigma: float = setting(1.0, within=NON_NEGATIVE, help='σ of `gaussian`')
    vertex: Optional[int] = setting(None, within=NON_NEGATIVE, help='`vertices`: always this dimension (None = a random one per example)')
    schedule: Optional[str] = setting(None, path=True, help='`scheduled`: path to a schedule JSON')
    anchor_share: float = setting(0.0, within=Interval(0, 1, "left"), help='share of examples given the anchor λ (`weights`, else the centroid) instead of a draw')
    seed: int = setting(0, help="seed of the per-example λ draws (with the epoch and the example's key)")

    def __post_init__(self) -> None:
        check_settings(self, "lambdas")
        if self.sampler == "fixed" and self.weights is None:
            raise ValueError("lambdas.sampler 'fixed' needs lambdas.weights (a λ on the simplex)")
        if self.sampler == "scheduled" and not self.schedule:
            raise ValueError("lambdas.sampler 'scheduled' needs lambdas.schedule (a schedule JSON path)")
        if self.anchor_share and self.sampler not in ANCHORABLE:
            raise ValueError(f"lambdas.anchor_share applies to the {', '.join(ANCHORABLE)} samplers, not {self.sampler!r}")


def fixed_at(config: LambdaConfig, weights: Sequence[float]) -> LambdaConfig:
    """``config`` giving every example the λ ``weights``."""
    return dataclasses.replace(config, sampler="fixed", weights=[float(w) for w in weights])


def centred_dirichlet(config: LambdaConfig, weights: Sequence[float], concentration: float) -> LambdaConfig:
    """``config`` drawing λ ~ Dir(concentration · weights): mean ``weights``, total concentration
    ``concentration`` (as :func:`dirichlet_alpha` reads ``weights`` and ``dirichlet_alpha``)."""
    return dataclasses.replace(config, sampler="dirichlet", weights=[float(w) for w in weights], dirichlet_alpha=concentration / len(weights))


MIN_DIRICHLET_ALPHA = 1e-3  # a centre on a face of the simplex still gives a proper Dirichlet


def dirichlet_alpha(config: LambdaConfig, num_dimensions: int) -> np.ndarray:
    """α of the `dirichlet` sampler: ``dirichlet_alpha`` everywhere, or, with ``weights`` as the
    centre, ``dirichlet_alpha · m · weights`` (mean = weights; the centroid gives the same α)."""
    if config.weights is None:
        return np.full(num_dimensions, float(config.dirichlet_alpha))
    centre = validate_lambda(config.weights, num_dimensions, name="lambdas.weights")
    return np.maximum(config.dirichlet_alpha * num_dimensions * centre, MIN_DIRICHLET_ALPHA)


def build_sampler(config: LambdaConfig, dimensions: Sequence[str]) -> LambdaSampler:
    """The sampler a config names, validated against the dataset's dimensions."""
    sampler = _named_sampler(config, dimensions)
    if not config.anchor_share:
        return sampler
    m = len(dimensions)
    anchor = np.full(m, 1.0 / m) if config.weights is None else validate_lambda(config.weights, m, name="lambdas.weights")
    return AnchoredSampler(sampler, anchor, float(config.anchor_share))


def _named_sampler(config: LambdaConfig, dimensions: Sequence[str]) -> LambdaSampler:
    m = len(dimensions)
    if config.sampler == "fixed":
        return FixedSampler(validate_lambda(config.weights, m, name="lambdas.weights"))
    if config.sampler == "uniform":
        return uniform_sampler(m)
    if config.sampler == "dirichlet":
        return DirichletSampler(dirichlet_alpha(config, m))
    if config.sampler == "gaussian":
        return GaussianSampler(m, float(config.gaussian_sigma))
    if config.sampler == "vertices":
        if config.vertex is not None and not 0 <= config.vertex < m:
            raise ValueError(f"lambdas.vertex must be in [0, {m - 1}] for dimensions {list(dimensions)}, got {config.vertex}")
        return VerticesSampler(m, config.vertex)
    schedule = read_schedule(config.schedule)
    if tuple(schedule.dimensions) != tuple(dimensions):
        raise ValueError(f"schedule {config.schedule} is over dimensions {list(schedule.dimensions)}, the data has {list(dimensions)}")
    return ScheduledSampler(schedule.candidates, schedule.probabilities)


def weighted_dimensions(config: LambdaConfig, num_dimensions: int) -> np.ndarray:
    """``[m]`` bool: the dimensions the sampler can give weight to (a fixed λ's positive entries,
    a fixed vertex; every dimension for the samplers that draw)."""
    if config.sampler == "fixed" and config.weights is not None:
        return np.asarray(config.weights, dtype=float) > 0
    if config.sampler == "vertices" and config.vertex is not None:
        return np.arange(num_dimensions) == config.vertex
    return np.ones(num_dimensions, dtype=bool)


def lambdas_for_examples(sampler: LambdaSampler, example_keys: Sequence[int], *, seed: int, epoch: int = 0) -> np.ndarray:
    """``[len(example_keys), m]``: one λ per example, a pure function of (seed, epoch, key)."""
    rows = [sampler.sample(np.random.default_rng([seed, epoch, int(key)]), 1)[0] for key in example_keys]
    return np.stack(rows) if rows else np.zeros((0, sampler.num_dimensions))
