import json

import numpy as np
import pytest

from lambda_dpo.cli import main
from lambda_dpo.data.loading import load_examples
from lambda_dpo.data.records import DEFAULT_DIMENSIONS
from lambda_dpo.data.synthetic import parse_synthetic_source, synthetic_records


def test_deterministic_from_the_seed_and_in_the_ultrafeedback_schema():
    first, again, other = synthetic_records(20, seed=3), synthetic_records(20, seed=3), synthetic_records(20, seed=4)
    assert first == again and first != other
    record = first[0]
    assert set(record) == {"source", "instruction", "models", "correct_answers", "incorrect_answers", "completions"}
    completion = record["completions"][0]
    assert set(completion["annotations"]) == set(DEFAULT_DIMENSIONS)
    assert all(isinstance(aspect["Rating"], str) for aspect in completion["annotations"].values())


def test_ratings_cover_the_scale_with_some_na_and_partly_conflicting_dimensions():
    examples, report = load_examples("synthetic:1000", dimensions=DEFAULT_DIMENSIONS)
    assert report.num_loaded == 1000 and all(e.num_responses == 4 for e in examples)
    ratings = np.stack([e.ratings for e in examples])  # [E, m, N]
    missing = np.isnan(ratings).mean(axis=(0, 2))
    assert missing[0] == 0 and all(0.01 < share < 0.25 for share in missing[1:])
    assert set(np.unique(ratings[~np.isnan(ratings)])) == {1.0, 2.0, 3.0, 4.0, 5.0}
    best = np.nanargmax(np.nan_to_num(ratings, nan=-1.0), axis=2)  # [E, m] best response per dimension
    agreement = [(best[:, i] == best[:, j]).mean() for i in range(4) for j in range(i + 1, 4)]
    assert max(agreement) < 0.5  # the dimensions disagree on the best response most of the time
    flat = ratings.transpose(1, 0, 2).reshape(4, -1)
    rated = ~np.isnan(flat).any(axis=0)
    assert np.corrcoef(flat[:, rated])[0, 1] < -0.2  # hedging: helpfulness against honesty


def test_source_strings():
    assert parse_synthetic_source("synthetic:4000") == (4000, 0)
    assert parse_synthetic_source("synthetic:10:seed=7") == (10, 7)
    assert parse_synthetic_source("openbmb/UltraFeedback") is None
    with pytest.raises(ValueError, match="synthetic:4000"):
        parse_synthetic_source("synthetic:many")


def test_synthesize_command_writes_what_the_loader_generates(tmp_path, capsys):
    out = tmp_path / "synthetic.jsonl"
    assert main(["data", "synthesize", "--num-prompts", "12", "--seed", "2", "--out", str(out)]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == synthetic_records(12, seed=2)
    from_file, _ = load_examples(str(out), dimensions=DEFAULT_DIMENSIONS)
    generated, _ = load_examples("synthetic:12:seed=2", dimensions=DEFAULT_DIMENSIONS)
    assert [e.responses for e in from_file] == [e.responses for e in generated]
    np.testing.assert_array_equal(np.stack([e.ratings for e in from_file]), np.stack([e.ratings for e in generated]))
