from pathlib import Path

import pytest

import lambda_dpo.data
from lambda_dpo.cli import main

SAMPLE = Path(lambda_dpo.data.__file__).parent / "examples" / "ultrafeedback_sample.jsonl"


def test_data_check_reports_loaded_skipped_and_coverage(capsys):
    assert main(["data", "check", str(SAMPLE), "--on-bad-record", "skip"]) == 0
    out = capsys.readouterr().out
    assert "4 of 5 records loaded, 1 skipped" in out
    assert "ultrafeedback_sample.jsonl[4]" in out
    # honesty: 4 of the 12 ratings of the loaded records are N/A, and one prompt has none rated.
    honesty = next(line for line in out.splitlines() if "honesty" in line)
    assert "8" in honesty and "4" in honesty and "3 / 4" in honesty


def test_data_check_under_raise_names_the_bad_record(capsys):
    assert main(["data", "check", str(SAMPLE)]) == 2
    assert "record ultrafeedback_sample.jsonl[4]: field 'completions'" in capsys.readouterr().err


def test_rating_correlations_are_spearman_over_the_responses_rated_in_both():
    import numpy as np

    from lambda_dpo.data.commands import rating_correlations
    from lambda_dpo.data.records import ListwiseExample

    ratings = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [1.0, np.nan, np.nan, 5.0]])
    examples = [ListwiseExample(0, "r0", "p", ("a", "b", "c", "d"), ratings), ListwiseExample(1, "r1", "q", ("a", "b", "c", "d"), ratings)]
    rho = rating_correlations(examples, ["x", "y", "z"])
    assert rho[0, 1] == pytest.approx(-1.0) and rho[0, 0] == pytest.approx(1.0)
    assert rho[0, 2] == pytest.approx(1.0)  # over the 4 responses rated in z only


def test_ratings_differ_counts_the_prompts_with_two_rated_responses_whose_ratings_differ():
    import numpy as np

    from lambda_dpo.data.commands import ratings_differ
    from lambda_dpo.data.records import ListwiseExample

    def example(index, row):
        return ListwiseExample(index, f"r{index}", "p", ("a", "b", "c"), np.array([row]))

    examples = [example(0, [1.0, 5.0, np.nan]), example(1, [3.0, 3.0, 3.0]), example(2, [2.0, np.nan, np.nan]), example(3, [np.nan, 4.0, 1.0])]
    assert ratings_differ(examples, 0) == 2  # one rated response cannot differ; equal ratings do not
