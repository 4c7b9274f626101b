from pathlib import Path

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
