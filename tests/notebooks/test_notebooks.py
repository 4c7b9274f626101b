"""The notebooks run top to bottom (nbclient) on the shipped example and on a sweep with an
errored trial; each notebook asserts its own invariants in its cells."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from search.analysis import EXAMPLE, REAL_MODEL_EXAMPLE  # noqa: E402

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
pytestmark = pytest.mark.integration


def execute(name: str) -> list[dict]:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def images(outputs) -> int:
    return sum("image/png" in output.get("data", {}) for output in outputs)


def text(outputs) -> str:
    return "\n".join(output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in outputs)


@pytest.mark.parametrize("name, figures", [("scheduler_analysis", 3), ("sweep_report", 3)])
def test_notebook_runs_on_the_shipped_example(name, figures, monkeypatch):
    monkeypatch.delenv("LAMBDA_DPO_SWEEP_DIR", raising=False)
    outputs = execute(name)
    assert images(outputs) >= figures
    assert "8 trials, objective top1_accuracy/mixed" in text(outputs)


@pytest.mark.parametrize("name, said", [("scheduler_analysis", "left-out RMSE "), ("sweep_report", "best of all rows 46077947: verifiable/mixed = 0.3786")])
def test_notebook_runs_on_the_shipped_real_model_sweep(name, said, monkeypatch):
    # Its warm-start rows have no evaluation in the sweep directory: the notebooks must not look for one.
    monkeypatch.setenv("LAMBDA_DPO_SWEEP_DIR", str(REAL_MODEL_EXAMPLE))
    outputs = execute(name)
    assert images(outputs) >= 3
    assert "8 trials and 7 warm-start observations, objective verifiable/mixed" in text(outputs) and said in text(outputs)


def test_sweep_report_reads_a_sweep_directory_with_an_errored_trial(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    shutil.copytree(EXAMPLE, sweep)
    table = pd.read_csv(sweep / "results.csv", dtype={"trial_id": str})
    errored = table.loc[1, "trial_id"]
    table.loc[1, ["status", "objective"]] = ["ERROR", float("nan")]
    table.to_csv(sweep / "results.csv", index=False)
    shutil.rmtree(sweep / "runs" / errored)
    monkeypatch.setenv("LAMBDA_DPO_SWEEP_DIR", str(sweep))
    outputs = execute("sweep_report")
    assert f"{sweep}: 8 trials" in text(outputs)
    assert "best trial c2cb7e4b" in text(outputs)
