"""Record parsing: UltraFeedback and our listwise JSONL, both to one :class:`ListwiseExample`.

Parsers raise :class:`BadRecordError` naming the record and the field; the loader decides
whether that stops the load or the record is skipped and counted (``on_bad_record``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Mapping, Sequence, Union

import numpy as np

DEFAULT_DIMENSIONS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
MIN_RESPONSES = 2
ULTRAFEEDBACK_SCALE = (1.0, 5.0)  # its annotators rate "1".."5"

Prompt = Union[str, list]


class BadRecordError(ValueError):
    """A record that cannot become a listwise example; names the record and the field."""

    def __init__(self, record_id: str, field: str, message: str):
        super().__init__(f"record {record_id}: field {field!r}: {message}")
        self.record_id = record_id
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ListwiseExample:
    """One prompt with its candidate responses and their ratings.

    key: position in the loaded dataset; seeds the example's λ and keys the reference cache.
    record_id: where the record came from, for messages ("data.jsonl:12").
    prompt: a string or a list of chat messages ``{"role": ..., "content": ...}``.
    ratings: ``[m, N]`` float, NaN where a rating is N/A.
    metadata: the record's other fields (a verifiable set's ``verification``, UltraFeedback's
        ``source``), kept for evaluations that need them.
    """

    key: int
    record_id: str
    prompt: Prompt
    responses: tuple[str, ...]
    ratings: np.ndarray
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_responses(self) -> int:
        return len(self.responses)


def _check_prompt(prompt: Any, record_id: str, field: str) -> Prompt:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise BadRecordError(record_id, field, "is empty")
        return prompt
    if isinstance(prompt, (list, tuple)) and prompt:
        for index, message in enumerate(prompt):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
                raise BadRecordError(record_id, f"{field}[{index}]", "chat messages need string 'role' and 'content'")
        if not any(message["content"].strip() for message in prompt):
            raise BadRecordError(record_id, field, "every message is empty")
        return [{"role": message["role"], "content": message["content"]} for message in prompt]
    raise BadRecordError(record_id, field, f"must be a non-empty string or list of chat messages, got {type(prompt).__name__}")


def _check_responses(responses: Sequence[Any], record_id: str, field_of) -> tuple[str, ...]:
    if len(responses) < MIN_RESPONSES:
        raise BadRecordError(record_id, field_of(None), f"has {len(responses)} response{'' if len(responses) == 1 else 's'}; at least {MIN_RESPONSES} are needed to rank")
    for index, response in enumerate(responses):
        if not isinstance(response, str) or not response.strip():
            raise BadRecordError(record_id, field_of(index), "response text is empty or not a string")
    return tuple(responses)


def check_rating_scale(scale: Sequence[float] | None, *, name: str = "data.rating_scale") -> None:
    if scale is not None and not (len(scale) == 2 and all(math.isfinite(v) for v in scale) and scale[0] < scale[1]):
        raise ValueError(f"{name} must be [low, high] with finite low < high, got {list(scale)}")


def _rating_value(value: Any, record_id: str, field: str, *, allow_strings: bool, scale: Sequence[float] | None = None) -> float:
    if value is None:
        return math.nan
    given = value
    if isinstance(value, str) and allow_strings:
        text = value.strip()
        if text.upper() == "N/A":
            return math.nan
        try:
            value = float(text)
        except ValueError:
            raise BadRecordError(record_id, field, f"rating {value!r} is neither a number nor 'N/A'") from None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise BadRecordError(record_id, field, f"rating {value!r} is not a number or null")
    if not math.isfinite(float(value)):
        raise BadRecordError(record_id, field, f"rating {value!r} is not finite")
    if scale is not None and not scale[0] <= float(value) <= scale[1]:
        raise BadRecordError(record_id, field, f"rating {given!r} is outside the rating scale [{scale[0]:g}, {scale[1]:g}] (data.rating_scale)")
    return float(value)


def parse_listwise(record: dict, *, key: int, record_id: str, dimensions: Sequence[str], scale: Sequence[float] | None = None) -> ListwiseExample:
    """Our listwise record: ``{"prompt", "responses", "ratings": {dim: [.. or null]}}``; ratings
    must lie in ``scale`` (``[low, high]``) when one is given, else any finite number."""
    if not isinstance(record, dict):
        raise BadRecordError(record_id, "(record)", f"must be a JSON object, got {type(record).__name__}")
    for name in ("prompt", "responses", "ratings"):
        if record.get(name) is None:
            raise BadRecordError(record_id, name, "is missing")
    prompt = _check_prompt(record["prompt"], record_id, "prompt")
    if not isinstance(record["responses"], (list, tuple)):
        raise BadRecordError(record_id, "responses", "must be a list of strings")
    responses = _check_responses(record["responses"], record_id, lambda i: "responses" if i is None else f"responses[{i}]")
    ratings_by_dimension = record["ratings"]
    if not isinstance(ratings_by_dimension, dict):
        raise BadRecordError(record_id, "ratings", "must map each dimension to a list of ratings")
    ratings = np.full((len(dimensions), len(responses)), math.nan)
    for row, dimension in enumerate(dimensions):
        values = ratings_by_dimension.get(dimension)
        field = f"ratings.{dimension}"
        if values is None:
            raise BadRecordError(record_id, field, f"is missing (dimensions are {list(dimensions)})")
        if not isinstance(values, (list, tuple)) or len(values) != len(responses):
            count = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
            raise BadRecordError(record_id, field, f"has {count} ratings for {len(responses)} responses")
        ratings[row] = [_rating_value(value, record_id, f"{field}[{i}]", allow_strings=False, scale=scale) for i, value in enumerate(values)]
    metadata = {name: value for name, value in record.items() if name not in ("prompt", "responses", "ratings")}
    return ListwiseExample(key, record_id, prompt, responses, ratings, metadata)


def _aspect(annotations: dict, dimension: str, record_id: str, field: str) -> dict:
    aspect = annotations.get(dimension)
    # Some copies of UltraFeedback wrap each aspect in a one-element list.
    if isinstance(aspect, (list, tuple)):
        if len(aspect) != 1:
            raise BadRecordError(record_id, field, f"list-wrapped aspect must have one element, has {len(aspect)}")
        aspect = aspect[0]
    if not isinstance(aspect, dict) or "Rating" not in aspect:
        raise BadRecordError(record_id, field, "is missing or has no 'Rating'")
    return aspect


def parse_ultrafeedback(record: dict, *, key: int, record_id: str, dimensions: Sequence[str], scale: Sequence[float] | None = None) -> ListwiseExample:
    """An ``openbmb/UltraFeedback`` record (ratings are strings "1".."5" or "N/A"; ``scale``
    defaults to UltraFeedback's own 1–5)."""
    if not isinstance(record, dict):
        raise BadRecordError(record_id, "(record)", f"must be a JSON object, got {type(record).__name__}")
    scale = ULTRAFEEDBACK_SCALE if scale is None else scale
    prompt = _check_prompt(record.get("instruction"), record_id, "instruction")
    completions = record.get("completions")
    if not isinstance(completions, (list, tuple)):
        raise BadRecordError(record_id, "completions", "is missing or not a list")
    for index, completion in enumerate(completions):
        if not isinstance(completion, dict):
            raise BadRecordError(record_id, f"completions[{index}]", "must be an object")
    responses = _check_responses(
        [completion.get("response") for completion in completions],
        record_id,
        lambda i: "completions" if i is None else f"completions[{i}].response",
    )
    ratings = np.full((len(dimensions), len(responses)), math.nan)
    for column, completion in enumerate(completions):
        annotations = completion.get("annotations")
        if not isinstance(annotations, dict):
            raise BadRecordError(record_id, f"completions[{column}].annotations", "is missing or not an object")
        for row, dimension in enumerate(dimensions):
            field = f"completions[{column}].annotations.{dimension}"
            aspect = _aspect(annotations, dimension, record_id, field)
            ratings[row, column] = _rating_value(aspect["Rating"], record_id, f"{field}.Rating", allow_strings=True, scale=scale)
    return ListwiseExample(key, record_id, prompt, responses, ratings)


PARSERS = {"ultrafeedback": parse_ultrafeedback, "listwise": parse_listwise}


def detect_format(columns: Sequence[str]) -> str:
    """``ultrafeedback`` or ``listwise`` from a dataset's column names."""
    columns = set(columns)
    if {"instruction", "completions"} <= columns:
        return "ultrafeedback"
    if {"prompt", "responses", "ratings"} <= columns:
        return "listwise"
    raise ValueError(
        f"cannot tell the data format from columns {sorted(columns)}: UltraFeedback needs "
        "'instruction' and 'completions'; listwise needs 'prompt', 'responses' and 'ratings'"
    )
