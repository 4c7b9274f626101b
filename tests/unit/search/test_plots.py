"""The sweep's pictures say what a user asks of them: the fitted objective, its scale, the trials."""

import numpy as np
import pytest

from search.plots import objective_figure, pair_profile, schedule_figure
from search.lambda_scheduler import PolynomialScheduler

DIMENSIONS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    lambdas = np.vstack([np.eye(4), np.full((1, 4), 0.25), rng.dirichlet(np.ones(4), size=7)])
    scores = -((lambdas - [0.1, 0.5, 0.3, 0.1]) ** 2).sum(1)
    return PolynomialScheduler(dimensions=DIMENSIONS, degree=2, random_state=0).fit(lambdas, scores)


def texts(figure) -> list[str]:
    return [text.get_text() for axes in figure.axes for text in axes.texts] + [text.get_text() for text in figure.texts]


def test_pair_profile_is_the_maximum_over_the_other_weights(fitted):
    a, b, values = pair_profile(fitted, 1, 2, resolution=10)
    assert np.all(a + b <= 1 + 1e-9) and len(values) == 66
    rng = np.random.default_rng(1)
    for cell in rng.choice(len(values), size=8, replace=False):
        shares = rng.dirichlet(np.ones(2), size=4000) * max(1 - a[cell] - b[cell], 0.0)
        points = np.column_stack([shares[:, 0], np.full(4000, a[cell]), np.full(4000, b[cell]), shares[:, 1]])
        brute = fitted.predict(points).max()
        assert values[cell] >= brute - 1e-3 and values[cell] <= brute + 1e-9


def test_four_weights_show_every_pair_once_with_a_colour_bar_and_the_trials_marked(fitted):
    labels = [str(k) for k in range(3, 3 + len(fitted.observed_lambdas_))]
    figure = schedule_figure(fitted, labels=labels, score_label="fitted top1_accuracy/mixed")
    plots = [axes for axes in figure.axes if axes.get_xlabel().startswith("λ ")]
    assert len(plots) == 6  # 4 choose 2: no mirrored halves
    pairs = {(axes.get_xlabel(), axes.get_ylabel()) for axes in plots}
    assert len(pairs) == 6
    colour_bars = [axes for axes in figure.axes if "max over the others" in axes.get_ylabel()]
    assert len(colour_bars) == 1 and "top1_accuracy/mixed" in colour_bars[0].get_ylabel()
    assert "maximised over the other weights" in figure._suptitle.get_text()
    shown = ",".join(texts(figure))
    assert all(label in shown for label in labels)  # trials numbered as objective.png numbers them
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert {"best observed", "predicted best"} <= set(legend)


def test_three_weights_give_a_ternary_map_with_the_same_marks():
    rng = np.random.default_rng(2)
    lambdas = rng.dirichlet(np.ones(3), size=8)
    scheduler = PolynomialScheduler(dimensions=["a", "b", "c"], degree=2, random_state=0).fit(lambdas, -((lambdas - [0.6, 0.3, 0.1]) ** 2).sum(1))
    figure = schedule_figure(scheduler)
    (main,) = [axes for axes in figure.axes if axes.get_legend() is not None]
    assert {"best observed", "predicted best"} <= {text.get_text() for text in main.get_legend().get_texts()}
    assert any(axes.get_ylabel() == "fitted f(λ)" for axes in figure.axes)  # the colour bar
    assert {str(k) for k in range(1, 9)} <= set(",".join(texts(figure)).split(","))


def test_objective_plot_numbers_the_trials_and_lists_their_lambda():
    values = np.array([0.5, np.nan, 0.7])
    lambdas = np.array([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]])
    figure = objective_figure(values, mode="max", label="top1_accuracy/mixed", title="t", lambdas=lambdas, dimensions=["helpfulness", "honesty"])
    table = [axes for axes in figure.axes if axes.tables][0].tables[0]
    cells = {key: cell.get_text().get_text() for key, cell in table.get_celld().items()}
    assert [cells[(0, c)] for c in range(4)] == ["#", "helpful…", "honesty", "objective"]
    assert [cells[(3, c)] for c in range(4)] == ["3", "0.30", "0.70", "0.7000"] and cells[(2, 3)] == "—"
    assert {"1", "3"} <= set(texts(figure))  # finished trials labelled on the plot
