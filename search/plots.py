"""Pictures of a fitted scheduler: the landscape f over the simplex and the sampling distribution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from search.lambda_scheduler import PolynomialScheduler, simplex_grid

SQRT3_2 = np.sqrt(3) / 2


def ternary_xy(lambdas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric λ (m = 3) to the plane: vertex 1 at (0, 0), 2 at (1, 0), 3 at (½, √3/2)."""
    return lambdas[:, 1] + lambdas[:, 2] / 2, lambdas[:, 2] * SQRT3_2


@dataclass
class Marks:
    """What every schedule plot marks: the observed trials (labelled), the best of them and the
    fitted objective's predicted best."""

    observed: np.ndarray  # [n, m]
    labels: list[str]
    best_observed: np.ndarray  # [m]
    predicted_best: np.ndarray  # [m]

    @classmethod
    def of(cls, scheduler: PolynomialScheduler, labels: Sequence[str] | None) -> "Marks":
        observed = scheduler.observed_lambdas_
        labels = list(labels) if labels is not None else [str(k + 1) for k in range(len(observed))]
        return cls(observed, labels, observed[int(np.argmax(scheduler.observed_scores_))], scheduler.best_candidate())


def _mark(axes, marks: Marks, project) -> None:
    """Draw ``marks`` on ``axes`` through ``project`` (``[n, m]`` λ → x, y)."""
    x, y = project(marks.observed)
    axes.scatter(x, y, c="white", edgecolors="black", s=40, zorder=3, label="trials (number = creation order)")
    at: dict[tuple[float, float], list[str]] = {}  # trials that project onto one point share a label
    for label, xi, yi in zip(marks.labels, x, y):
        at.setdefault((round(float(xi), 3), round(float(yi), 3)), []).append(label)
    for (xi, yi), labels in at.items():
        axes.annotate(",".join(labels), (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=7, zorder=5)
    bx, by = project(marks.best_observed[None, :])
    axes.scatter(bx, by, marker="D", facecolors="none", edgecolors="orange", linewidths=2, s=110, zorder=4, label="best observed")
    px, py = project(marks.predicted_best[None, :])
    axes.scatter(px, py, marker="*", c="red", edgecolors="black", linewidths=0.5, s=180, zorder=4, label="predicted best")


def _ternary(scheduler: PolynomialScheduler, axes, marks: Marks, score_label: str) -> None:
    grid = simplex_grid(3, 60)
    x, y = ternary_xy(grid)
    surface = axes.tricontourf(x, y, scheduler.predict(grid), levels=30, cmap="viridis")
    axes.figure.colorbar(surface, ax=axes, label=score_label)
    _mark(axes, marks, ternary_xy)
    axes.plot([0, 1, 0.5, 0], [0, 0, SQRT3_2, 0], color="black", linewidth=1)
    for (vx, vy), name in zip([(0, 0), (1, 0), (0.5, SQRT3_2)], scheduler.dimensions_):
        axes.annotate(name, (vx, vy), textcoords="offset points", xytext=(0, -14 if vy == 0 else 6), ha="center")
    axes.set_ylim(-0.08, SQRT3_2 + 0.1)
    axes.set_aspect("equal")
    axes.axis("off")
    axes.legend(loc="upper right", fontsize=7)
    axes.set_title("fitted objective over the simplex", pad=14)


def _line(scheduler: PolynomialScheduler, axes, marks: Marks, score_label: str) -> None:
    grid = simplex_grid(2, 200)
    axes.plot(grid[:, 0], scheduler.predict(grid), label="fitted f(λ)")
    _mark(axes, marks, lambda lambdas: (lambdas[:, 0], _observed_or_predicted(scheduler, lambdas)))
    axes.set_xlabel(f"λ {scheduler.dimensions_[0]} (1 − λ {scheduler.dimensions_[1]})")
    axes.set_ylabel(score_label)
    axes.legend(fontsize=7)


def _observed_or_predicted(scheduler: PolynomialScheduler, lambdas: np.ndarray) -> np.ndarray:
    """Heights on the m = 2 curve: a trial's own score where ``lambdas`` was observed, else the fit."""
    heights = scheduler.predict(lambdas)
    for k, weights in enumerate(lambdas):
        same = np.all(np.isclose(scheduler.observed_lambdas_, weights), axis=1)
        if same.any():
            heights[k] = scheduler.observed_scores_[same].max()
    return heights


def pair_profile(scheduler: PolynomialScheduler, i: int, j: int, *, resolution: int = 24, fills: int = 256, seed: int = 0):
    """The fitted objective as a function of (λ_i, λ_j) alone, maximised over the other
    coordinates: for every (a, b) with a + b ≤ 1 on a grid, the largest prediction over ``fills``
    ways of sharing 1 − a − b among the others (Dirichlet draws plus the sub-simplex's vertices and
    centre). Returns ``a [c]``, ``b [c]`` and the maxima ``[c]``."""
    m = len(scheduler.dimensions_)
    others = [k for k in range(m) if k not in (i, j)]
    rng = np.random.default_rng(seed)
    shares = np.vstack([np.eye(len(others)), np.full((1, len(others)), 1.0 / len(others)), rng.dirichlet(np.ones(len(others)), size=fills)])
    cells = simplex_grid(3, resolution)[:, :2]  # (a, b, 1 − a − b) on a lattice: a + b ≤ 1
    points = np.zeros((len(cells), len(shares), m))
    points[:, :, i], points[:, :, j] = cells[:, :1], cells[:, 1:]
    points[:, :, others] = np.clip(1.0 - cells.sum(1), 0.0, None)[:, None, None] * shares[None]
    values = scheduler.predict(points.reshape(-1, m)).reshape(len(cells), len(shares)).max(1)
    return cells[:, 0], cells[:, 1], values


def _projections(scheduler: PolynomialScheduler, marks: Marks, score_label: str) -> Figure:
    m = len(scheduler.dimensions_)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    profiles = [pair_profile(scheduler, i, j) for i, j in pairs]
    low = min(values.min() for *_, values in profiles)
    high = max(values.max() for *_, values in profiles)
    levels = np.linspace(low, high + 1e-12, 25)
    figure = Figure(figsize=(4.2 * columns + 1.2, 4.0 * rows + 0.8))
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes, (i, j), (a, b, values) in zip(grid.flat, pairs, profiles):
        surface = axes.tricontourf(a, b, values, levels=levels, cmap="viridis")
        _mark(axes, marks, lambda lambdas, i=i, j=j: (lambdas[:, i], lambdas[:, j]))
        axes.plot([0, 1, 0, 0], [0, 0, 1, 0], color="black", linewidth=0.8)
        axes.set_xlim(-0.03, 1.03)
        axes.set_ylim(-0.03, 1.03)
        axes.set_aspect("equal")
        axes.set_xlabel(f"λ {scheduler.dimensions_[i]}", fontsize=9)
        axes.set_ylabel(f"λ {scheduler.dimensions_[j]}", fontsize=9)
    for axes in list(grid.flat)[len(pairs):]:
        axes.axis("off")
    handles, names = grid.flat[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=3, fontsize=9)
    figure.suptitle("fitted objective by pair of weights, maximised over the other weights (λ sums to 1)")
    figure.tight_layout(rect=(0, 0.05, 0.9, 0.96))
    figure.colorbar(surface, ax=list(grid.flat), label=f"{score_label} (max over the others)", fraction=0.03)
    return figure


def schedule_figure(scheduler: PolynomialScheduler, *, labels: Sequence[str] | None = None, score_label: str = "fitted f(λ)") -> Figure:
    """m = 2 a curve, m = 3 a ternary heat map, m ≥ 4 the fitted objective's pairwise projections;
    each marks the observed trials (``labels``, default 1..n), the best observed and the predicted
    best. A pyplot-free figure: no backend is chosen or changed (a notebook displays it as is)."""
    marks = Marks.of(scheduler, labels)
    m = len(scheduler.dimensions_)
    if m >= 4:
        return _projections(scheduler, marks, score_label)
    figure = Figure(figsize=(6.5, 5.5))
    (_line if m == 2 else _ternary)(scheduler, figure.subplots(), marks, score_label)
    figure.tight_layout()
    return figure


def plot_schedule(scheduler: PolynomialScheduler, path: str | Path, **options) -> Path:
    """Write :func:`schedule_figure` to a PNG."""
    figure = schedule_figure(scheduler, **options)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def plot_objective(values: np.ndarray, path: Path, **options) -> Path:
    """Write :func:`objective_figure` to a PNG (a sweep's objective.png)."""
    objective_figure(values, **options).savefig(path, dpi=120)
    return path


def objective_figure(values: np.ndarray, *, mode: str, label: str, title: str, lambdas: np.ndarray | None = None, dimensions: Sequence[str] = ()) -> Figure:
    """The objective by trial in creation order, with the best so far; given ``lambdas``
    ``[n, m]``, a table beside it says which λ each numbered trial ran."""
    values = np.asarray(values, dtype=float)
    trials = np.arange(1, len(values) + 1)
    finite = np.isfinite(values)
    best = (np.fmax.accumulate if mode == "max" else np.fmin.accumulate)(np.where(finite, values, np.nan))
    with_table = lambdas is not None and len(values) > 0
    rows = len(values) + 1
    figure = Figure(figsize=(6.5 + (1.2 + 0.75 * len(dimensions) if with_table else 0), max(4.0, 0.24 * rows + 1.2) if with_table else 4.0))
    if with_table:
        axes, side = figure.subplots(1, 2, gridspec_kw={"width_ratios": [6.5, 1.2 + 0.75 * len(dimensions)]})
    else:
        axes = figure.subplots()
    axes.plot(trials, values, "o", label="trial")
    axes.step(trials, best, where="post", label=f"best so far ({mode})")
    for trial, value in zip(trials[finite], values[finite]):
        axes.annotate(str(trial), (trial, value), textcoords="offset points", xytext=(3, 3), fontsize=7)
    axes.set_xlabel("trial (in order of creation)")
    axes.set_ylabel(label)
    axes.set_title(title)
    axes.legend()
    if with_table:
        side.axis("off")
        cells = [[str(t), *(f"{w:.2f}" for w in weights), f"{v:.4f}" if np.isfinite(v) else "—"] for t, weights, v in zip(trials, np.asarray(lambdas, float), values)]
        table = side.table(cellText=cells, colLabels=["#", *(_short(name) for name in dimensions), "objective"], loc="upper center", cellLoc="right")
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        table.scale(1.0, 1.1)
        side.set_title("λ of each trial", fontsize=9)
    figure.tight_layout()
    return figure


def _short(name: str, width: int = 8) -> str:
    """A dimension name narrow enough for a table column (``instruction_following`` → ``instruc…``)."""
    return name if len(name) <= width else name[: width - 1] + "…"
