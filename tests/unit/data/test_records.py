import math

import numpy as np
import pytest

from lambda_dpo.data.records import DEFAULT_DIMENSIONS, BadRecordError, detect_format, parse_listwise, parse_ultrafeedback
from tests.factories import same_ratings, uf_record


def parse_uf(record):
    return parse_ultrafeedback(record, key=0, record_id="uf[0]", dimensions=DEFAULT_DIMENSIONS)


def parse_lw(record):
    return parse_listwise(record, key=0, record_id="lw[0]", dimensions=["helpfulness", "honesty"])


def test_ultrafeedback_ratings_are_parsed_from_strings_with_na():
    record = uf_record("Name a prime.", [
        ("Two.", {"helpfulness": "5", "honesty": "N/A", "instruction_following": "4", "truthfulness": "5"}),
        ("Nine.", {"helpfulness": "2", "honesty": "3", "instruction_following": "4", "truthfulness": "1"}),
        ("Seven.", same_ratings("4")),
        ("Eleven.", same_ratings("N/A")),
    ])
    example = parse_uf(record)
    assert example.prompt == "Name a prime."
    assert example.responses == ("Two.", "Nine.", "Seven.", "Eleven.")
    assert example.ratings.shape == (4, 4)
    assert example.ratings[:, 0].tolist()[0] == 5.0 and math.isnan(example.ratings[1, 0])
    assert np.isnan(example.ratings[:, 3]).all()
    assert example.ratings[:, 1].tolist() == [2.0, 3.0, 4.0, 1.0]


def test_ultrafeedback_list_wrapped_aspects_are_accepted():
    completions = [("A.", same_ratings("5")), ("B.", same_ratings("2"))]
    plain = parse_uf(uf_record("Q?", completions))
    wrapped = parse_uf(uf_record("Q?", completions, wrapped=True))
    assert np.array_equal(plain.ratings, wrapped.ratings)


@pytest.mark.parametrize("count", [2, 3, 4])
def test_ultrafeedback_with_two_to_four_completions(count):
    completions = [(f"Answer {i}.", same_ratings(str(i + 1))) for i in range(count)]
    example = parse_uf(uf_record("Q?", completions))
    assert example.num_responses == count and example.ratings.shape == (4, count)


@pytest.mark.parametrize(
    "mutate, field, message",
    [
        (lambda r: r.update(completions=[]), "completions", "0 responses"),
        (lambda r: r.update(completions=r["completions"][:1]), "completions", "has 1 response;"),
        (lambda r: r.update(instruction="  "), "instruction", "is empty"),
        (lambda r: r["completions"][1].update(response=""), "completions[1].response", "empty"),
        (lambda r: r["completions"][0]["annotations"]["honesty"].update(Rating="great"), "completions[0].annotations.honesty.Rating", "neither a number nor 'N/A'"),
        (lambda r: r["completions"][0]["annotations"].pop("truthfulness"), "completions[0].annotations.truthfulness", "missing"),
        (lambda r: r["completions"][0]["annotations"].update(honesty=[]), "completions[0].annotations.honesty", "one element"),
    ],
)
def test_malformed_ultrafeedback_names_record_and_field(mutate, field, message):
    record = uf_record("Q?", [("A.", same_ratings("5")), ("B.", same_ratings("2"))])
    mutate(record)
    with pytest.raises(BadRecordError, match=message) as caught:
        parse_uf(record)
    assert caught.value.field == field and caught.value.record_id == "uf[0]"
    assert "record uf[0]" in str(caught.value)


def test_listwise_record_with_chat_prompt_and_nulls():
    example = parse_lw({
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
        "responses": ["Hello.", "Hey there, how are you doing today?", "Yo."],
        "ratings": {"helpfulness": [4, 2, None], "honesty": [5, 5, 1.5], "unused": [1, 1, 1]},
    })
    assert example.prompt[1] == {"role": "user", "content": "Hi?"}
    assert example.ratings[0, :2].tolist() == [4.0, 2.0] and math.isnan(example.ratings[0, 2])
    assert example.ratings[1].tolist() == [5.0, 5.0, 1.5]


@pytest.mark.parametrize(
    "record, field, message",
    [
        ({"prompt": "Q", "responses": [], "ratings": {}}, "responses", "0 responses"),
        ({"prompt": "Q", "responses": ["a", "b"], "ratings": {"helpfulness": [1, 2, 3], "honesty": [1, 2]}}, "ratings.helpfulness", "3 ratings for 2 responses"),
        ({"prompt": "Q", "responses": ["a", "b"], "ratings": {"helpfulness": [1, "x"], "honesty": [1, 2]}}, "ratings.helpfulness[1]", "not a number"),
        ({"prompt": "Q", "responses": ["a", "b"], "ratings": {"helpfulness": [1, True], "honesty": [1, 2]}}, "ratings.helpfulness[1]", "not a number"),
        ({"prompt": "Q", "responses": ["a", "b"], "ratings": {"helpfulness": [1, 2]}}, "ratings.honesty", "missing"),
        ({"prompt": "Q", "responses": ["a", " "], "ratings": {"helpfulness": [1, 2], "honesty": [1, 2]}}, "responses[1]", "empty"),
        ({"prompt": "", "responses": ["a", "b"], "ratings": {}}, "prompt", "empty"),
        ({"prompt": [{"role": "user"}], "responses": ["a", "b"], "ratings": {}}, "prompt[0]", "'role' and 'content'"),
        ({"responses": ["a", "b"], "ratings": {}}, "prompt", "missing"),
    ],
)
def test_malformed_listwise_names_field(record, field, message):
    with pytest.raises(BadRecordError, match=message) as caught:
        parse_lw(record)
    assert caught.value.field == field


def test_format_detection():
    assert detect_format(["source", "instruction", "completions"]) == "ultrafeedback"
    assert detect_format(["prompt", "responses", "ratings"]) == "listwise"
    with pytest.raises(ValueError, match="cannot tell the data format"):
        detect_format(["text"])
