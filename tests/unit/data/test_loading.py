
import pandas as pd
import pytest

from lambda_dpo.config import ConfigError, load_config
from lambda_dpo.data import BadRecordError, DataConfig, load_examples
from tests.factories import DIMENSIONS, same_ratings, uf_record, write_jsonl


def uf_records():
    return [
        uf_record("First?", [("A.", same_ratings("5")), ("B.", same_ratings("N/A")), ("C.", same_ratings("1"))]),
        uf_record("Second?", [("D.", same_ratings("3")), ("E.", same_ratings("4"))]),
        uf_record("Third?", [("F.", same_ratings("2"))] * 4, wrapped=False),
    ]


def test_ultrafeedback_jsonl_through_datasets(tmp_path):
    path = write_jsonl(tmp_path / "uf.jsonl", uf_records())
    examples, report = load_examples(str(path), dimensions=DIMENSIONS)
    assert report.format == "ultrafeedback" and report.num_loaded == 3
    assert [e.num_responses for e in examples] == [3, 2, 4]
    assert [e.key for e in examples] == [0, 1, 2]


def test_parquet_and_directory_sources(tmp_path):
    records = [{"prompt": f"Q{i}", "responses": ["a", "b"], "ratings": {"helpfulness": [i, None], "honesty": [1, 2]}} for i in range(3)]
    pd.DataFrame(records).to_parquet(tmp_path / "part.parquet")
    examples, report = load_examples(str(tmp_path), dimensions=["helpfulness", "honesty"], format="listwise")
    assert len(examples) == 3 and examples[2].ratings[0, 0] == 2.0


def test_malformed_record_raises_with_its_name(tmp_path):
    records = uf_records()
    records[1]["completions"][0]["annotations"]["honesty"]["Rating"] = "excellent"
    path = write_jsonl(tmp_path / "uf.jsonl", records)
    with pytest.raises(BadRecordError, match=r"record uf.jsonl\[1\]: field 'completions\[0\].annotations.honesty.Rating'"):
        load_examples(str(path), dimensions=DIMENSIONS)


def test_malformed_record_is_skipped_and_counted(tmp_path):
    records = uf_records()
    records[1]["completions"] = records[1]["completions"][:1]
    path = write_jsonl(tmp_path / "uf.jsonl", records)
    examples, report = load_examples(str(path), dimensions=DIMENSIONS, on_bad_record="skip")
    assert [e.prompt for e in examples] == ["First?", "Third?"]
    assert [e.key for e in examples] == [0, 1]  # keys stay dense for the λ seeds and caches
    assert report.num_records == 3 and len(report.skipped) == 1
    assert "1 skipped" in report.summary() and "uf.jsonl[1]" in report.summary()


def test_records_that_arrow_cannot_type_are_still_named(tmp_path):
    # A string rating among numbers makes the file un-typable for Arrow; the record is still named.
    lines = [
        {"prompt": "Q0", "responses": ["a", "b"], "ratings": {"helpfulness": [1, 2], "honesty": [1, 2]}},
        {"prompt": "Q1", "responses": ["a", "b"], "ratings": {"helpfulness": [1, "high"], "honesty": [1, 2]}},
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", lines)
    with pytest.raises(BadRecordError, match=r"mixed.jsonl\[1\].*ratings.helpfulness\[1\]"):
        load_examples(str(path), dimensions=["helpfulness", "honesty"])


def test_mixed_wrapped_and_plain_aspects_in_one_file(tmp_path):
    records = [uf_record("P?", [("A.", same_ratings("5")), ("B.", same_ratings("1"))]),
               uf_record("W?", [("A.", same_ratings("2")), ("B.", same_ratings("4"))], wrapped=True)]
    examples, _ = load_examples(str(write_jsonl(tmp_path / "uf.jsonl", records)), dimensions=DIMENSIONS)
    assert examples[1].ratings[:, 1].tolist() == [4.0] * 4


def test_limit_and_missing_sources(tmp_path):
    path = write_jsonl(tmp_path / "uf.jsonl", uf_records())
    examples, _ = load_examples(str(path), dimensions=DIMENSIONS, limit=2)
    assert len(examples) == 2
    with pytest.raises(FileNotFoundError, match="data file not found"):
        load_examples(str(tmp_path / "missing.jsonl"), dimensions=DIMENSIONS)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_examples(str(tmp_path / "notes.txt"), dimensions=DIMENSIONS)


def test_data_config_from_yaml_rejects_unknown_keys(tmp_path):
    config_path = tmp_path / "data.yaml"
    config_path.write_text("source: x.jsonl\non_bad_record: skip\n")
    assert load_config(DataConfig, config_path).on_bad_record == "skip"
    config_path.write_text("source: x.jsonl\non_bad_records: skip\n")
    with pytest.raises(ConfigError, match="on_bad_records"):
        load_config(DataConfig, config_path)
    with pytest.raises(ConfigError, match="data.on_bad_record must be one of"):
        load_config(DataConfig, overrides=["on_bad_record=ignore"])
