import json
import re

import numpy as np
import pandas as pd
import pytest

from lambda_dpo.cli import main
from search.lambda_scheduler import PolynomialScheduler

PAPER = pd.DataFrame({
    "helpfulness": [1, 0, 0, 0, 0.25],
    "honesty": [0, 1, 0, 0, 0.25],
    "instruction_following": [0, 0, 1, 0, 0.25],
    "truthfulness": [0, 0, 0, 1, 0.25],
    "accuracy": [0.4593, 0.4598, 0.4543, 0.4548, 0.4612],
})


@pytest.fixture
def observations(tmp_path):
    path = tmp_path / "observations.csv"
    PAPER.to_csv(path, index=False)
    return path


def test_fit_show_plot_on_the_papers_five_points(tmp_path, observations, capsys):
    out = tmp_path / "schedule.json"
    assert main(["schedule", "fit", "--observations", str(observations), "--score", "accuracy",
                 "--paper", "--temperature", "1000", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["dimensions"] == list(PAPER.columns[:4])
    assert len(payload["model"]["coefficients"]) == 15  # the paper's quadratic
    assert payload["lambda_scheduler"] | {"temperature": 100.0} == {**payload["lambda_scheduler"], "degree": 2, "regression": "lstsq", "temperature_scale": "raw", "local_candidates": 0, "temperature": 100.0}
    scheduler = PolynomialScheduler.from_json(out)
    np.testing.assert_allclose(scheduler.predict(PAPER.iloc[:, :4].to_numpy()), PAPER["accuracy"], atol=1e-9)

    capsys.readouterr()
    assert main(["schedule", "show", str(out), "--top", "3"]) == 0
    shown = capsys.readouterr().out
    assert "top 3 candidates" in shown and "probability" in shown and "5 observations" in shown
    # The paper's fit interpolates its 5 points; left out, each is predicted far worse than in-sample.
    error, yardstick = map(float, re.search(r"leave-one-out RMSE ([\d.]+) \(predicting each observation by the others' mean: ([\d.]+)\)", shown).groups())
    assert error > 0.001 and yardstick == pytest.approx(float(np.sqrt(np.mean((PAPER.accuracy - (PAPER.accuracy.sum() - PAPER.accuracy) / 4) ** 2))), abs=1e-4)

    png = tmp_path / "plots" / "schedule.png"
    assert main(["schedule", "plot", str(out), "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ternary_plot_for_three_dimensions(tmp_path):
    path = tmp_path / "three.csv"
    pd.DataFrame({"lambda/a": [1, 0, 0, 0.4], "lambda/b": [0, 1, 0, 0.3], "lambda/c": [0, 0, 1, 0.3],
                  "objective": [0.1, 0.2, 0.3, 0.4], "trial_id": ["t1", "t2", "t3", "t4"]}).to_csv(path, index=False)
    out = tmp_path / "schedule.json"
    assert main(["schedule", "fit", "--observations", str(path), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["dimensions"] == ["a", "b", "c"]
    png = tmp_path / "ternary.png"
    assert main(["schedule", "plot", str(out), "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000


def test_given_candidates_are_scored_instead_of_drawn(tmp_path, observations):
    candidates = tmp_path / "candidates.csv"
    pd.DataFrame([[0.4, 0.4, 0.1, 0.1], [0.1, 0.1, 0.4, 0.4], [0.25] * 4], columns=PAPER.columns[:4]).to_csv(candidates, index=False)
    out = tmp_path / "schedule.json"
    assert main(["schedule", "fit", "--observations", str(observations), "--score", "accuracy",
                 "--candidates", str(candidates), "--out", str(out)]) == 0
    scheduler = PolynomialScheduler.from_json(out)
    assert scheduler.candidates_.shape == (3, 4)
    assert scheduler.probabilities_.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--score", "objective"], "no score column 'objective'"),
        (["--score", "accuracy", "--dimensions", "helpfulness,harmlessness"], r"no column for dimension\(s\) \['harmlessness'\]"),
    ],
)
def test_wrong_column_names_are_clear_errors(tmp_path, observations, capsys, extra, message):
    code = main(["schedule", "fit", "--observations", str(observations), "--out", str(tmp_path / "s.json"), *extra])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)


def test_nan_score_and_off_simplex_rows_are_clear_errors(tmp_path, capsys):
    bad = PAPER.copy()
    bad.loc[2, "accuracy"] = np.nan
    path = tmp_path / "nan.csv"
    bad.to_csv(path, index=False)
    assert main(["schedule", "fit", "--observations", str(path), "--score", "accuracy", "--out", str(tmp_path / "s.json")]) == 0
    assert "1 of 5 rows have no finite accuracy and are left out" in capsys.readouterr().out  # a sweep's errored trial
    assert len(json.loads((tmp_path / "s.json").read_text())["observations"]["scores"]) == 4
    bad = PAPER.copy()
    bad.loc[0, "honesty"] = 0.5
    bad.to_csv(path, index=False)
    assert main(["schedule", "fit", "--observations", str(path), "--score", "accuracy", "--out", str(tmp_path / "s.json")]) == 2
    assert "lambdas[0] sums to 1.5" in capsys.readouterr().err


def test_schedule_fit_with_no_flags_reproduces_the_schedule_a_sweep_writes(tmp_path):
    from search.analysis import fitted_schedule
    from search.sweep_config import load_sweep_config

    config = load_sweep_config("configs/sweep/tiny.yaml")
    rng = np.random.default_rng(1)
    lambdas = np.vstack([np.eye(4), np.full((1, 4), 0.25), rng.dirichlet(np.ones(4), 3)])
    table = pd.DataFrame({"trial_id": [f"t{i}" for i in range(8)], "status": ["TERMINATED"] * 7 + ["ERROR"]})
    for k, name in enumerate(config.dimensions):
        table[f"lambda/{name}"] = lambdas[:, k]
    table["objective"] = [0.50, 0.42, 0.59, 0.53, 0.65, 0.60, 0.64, float("nan")]  # the last trial errored
    table["reward_margin"] = 0.1
    results = tmp_path / "results.csv"
    table.to_csv(results, index=False)
    sweep = fitted_schedule(config, table).to_dict()
    out = tmp_path / "schedule.json"
    assert main(["schedule", "fit", "--observations", str(results), "--out", str(out)]) == 0
    cli = json.loads(out.read_text())
    assert cli["lambda_scheduler"] == sweep["lambda_scheduler"]
    assert cli["model"]["coefficients"] == sweep["model"]["coefficients"] and cli["candidates"] == sweep["candidates"]


def test_show_says_how_the_model_was_chosen(tmp_path, capsys):
    rng = np.random.default_rng(0)
    lambdas = rng.dirichlet(np.ones(4), 14)
    frame = pd.DataFrame(lambdas, columns=PAPER.columns[:4]).assign(accuracy=0.5 + 0.1 * lambdas[:, 0] ** 4 + rng.normal(0, 0.001, 14))
    frame.to_csv(tmp_path / "observations.csv", index=False)
    out = tmp_path / "schedule.json"
    assert main(["schedule", "fit", "--observations", str(tmp_path / "observations.csv"), "--score", "accuracy", "--model-choice", "loo", "--out", str(out)]) == 0
    choice = json.loads(out.read_text())["model"]["choice"]
    assert choice["by"] == "loo"
    capsys.readouterr()
    assert main(["schedule", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"model: chosen by leave-one-out among degrees 2–4 × alphas 0\.001–1: degree \d, alpha [\d.e-]+, LOO RMSE [\d.]+ \(the settings' degree 3, alpha 0\.01: [\d.]+\)", shown), shown
