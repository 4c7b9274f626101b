"""Pictures of a fitted scheduler: the landscape f over the simplex and the sampling distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from search.scheduler import PolynomialScheduler, simplex_grid

SQRT3_2 = np.sqrt(3) / 2


def ternary_xy(lambdas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric λ (m = 3) to the plane: vertex 1 at (0, 0), 2 at (1, 0), 3 at (½, √3/2)."""
    return lambdas[:, 1] + lambdas[:, 2] / 2, lambdas[:, 2] * SQRT3_2


def _ternary(scheduler: PolynomialScheduler, axes) -> None:
    grid = simplex_grid(3, 60)
    x, y = ternary_xy(grid)
    surface = axes.tricontourf(x, y, scheduler.predict(grid), levels=30, cmap="viridis")
    axes.figure.colorbar(surface, ax=axes, label="predicted score f(λ)")
    ox, oy = ternary_xy(scheduler.observed_lambdas_)
    axes.scatter(ox, oy, c="white", edgecolors="black", s=45, label="observations", zorder=3)
    bx, by = ternary_xy(scheduler.best_candidate()[None, :])
    axes.scatter(bx, by, marker="*", c="red", s=160, label="best candidate", zorder=4)
    axes.plot([0, 1, 0.5, 0], [0, 0, SQRT3_2, 0], color="black", linewidth=1)
    for (vx, vy), name in zip([(0, 0), (1, 0), (0.5, SQRT3_2)], scheduler.dimensions_):
        axes.annotate(name, (vx, vy), textcoords="offset points", xytext=(0, -14 if vy == 0 else 6), ha="center")
    axes.set_ylim(-0.08, SQRT3_2 + 0.1)
    axes.set_aspect("equal")
    axes.axis("off")
    axes.legend(loc="upper right", fontsize=8)
    axes.set_title("fitted landscape over the simplex", pad=14)


def _line(scheduler: PolynomialScheduler, axes) -> None:
    grid = simplex_grid(2, 200)
    axes.plot(grid[:, 0], scheduler.predict(grid), label="f(λ)")
    axes.scatter(scheduler.observed_lambdas_[:, 0], scheduler.observed_scores_, c="black", label="observations")
    axes.set_xlabel(f"λ {scheduler.dimensions_[0]} (1 − λ {scheduler.dimensions_[1]})")
    axes.set_ylabel("score")
    axes.legend()


def _projections(scheduler: PolynomialScheduler) -> Figure:
    candidates, probabilities = scheduler.distribution()
    m = len(scheduler.dimensions_)
    figure = Figure(figsize=(2.6 * m, 2.6 * m))
    grid = figure.subplots(m, m, squeeze=False)
    for i in range(m):
        for j in range(m):
            axes = grid[i][j]
            if i == j:
                axes.hist(candidates[:, i], bins=20, range=(0, 1), weights=probabilities, color="tab:blue")
                axes.set_title(f"p(λ {scheduler.dimensions_[i]})", fontsize=8)
            else:
                order = np.argsort(probabilities)
                axes.scatter(candidates[order, j], candidates[order, i], c=probabilities[order], s=6, cmap="viridis")
                axes.scatter(scheduler.observed_lambdas_[:, j], scheduler.observed_lambdas_[:, i], c="red", s=14, marker="x")
                axes.set_xlim(0, 1)
                axes.set_ylim(0, 1)
            if i == m - 1:
                axes.set_xlabel(scheduler.dimensions_[j], fontsize=8)
            if j == 0:
                axes.set_ylabel(scheduler.dimensions_[i], fontsize=8)
    figure.suptitle("sampling distribution: marginals (diagonal) and pairwise projections (colour = probability, x = observations)")
    return figure


def schedule_figure(scheduler: PolynomialScheduler) -> Figure:
    """m = 2 a curve, m = 3 a ternary heat map, m ≥ 4 marginals and pairwise projections.
    A pyplot-free figure: no backend is chosen or changed (a notebook displays it as is)."""
    m = len(scheduler.dimensions_)
    if m >= 4:
        figure = _projections(scheduler)
    else:
        figure = Figure(figsize=(6.5, 5.5))
        (_line if m == 2 else _ternary)(scheduler, figure.subplots())
    figure.tight_layout()
    return figure


def plot_schedule(scheduler: PolynomialScheduler, path: str | Path) -> Path:
    """Write :func:`schedule_figure` to a PNG."""
    figure = schedule_figure(scheduler)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def plot_objective(values: np.ndarray, path: Path, *, mode: str, label: str, title: str) -> Path:
    """The objective by trial in creation order, with the best so far (a sweep's objective.png)."""
    values = np.asarray(values, dtype=float)
    trials = np.arange(1, len(values) + 1)
    best = (np.fmax.accumulate if mode == "max" else np.fmin.accumulate)(np.where(np.isfinite(values), values, np.nan))
    figure = Figure(figsize=(6.5, 4))
    axes = figure.subplots()
    axes.plot(trials, values, "o", label="trial")
    axes.step(trials, best, where="post", label="best so far")
    axes.set_xlabel("trial (in order of creation)")
    axes.set_ylabel(label)
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path
