"""Rule-based verifiers: a response's score in [0, 1] per dimension, or None where it does not apply.

Dimensions (documented with their reasons in docs/verifiable.md):

- ``instruction_following``: share of the prompt's IFEval instructions followed (strict check on
  the raw response); None when the prompt has none.
- ``correctness``: word problems only: 1 when the last number in the response is the answer,
  0.5 when the answer appears earlier, else 0.
- ``conciseness``: 1 up to 20 words, falling linearly to 0 at 100 words.
- ``detail``: share of the request's key points covered: an explanation's key terms (as word
  prefixes, so "scatter" counts "scattering"), a word problem's intermediate result.

An empty response (no word at all) scores 0 in every dimension that applies. The rating on the
1–5 scale of the data is ``1 + round(4 · score)``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
from typing import Mapping, Sequence

from lambda_dpo.verifiable.prompts import ARITHMETIC, Instruction, Verification

VERIFIABLE_DIMENSIONS = ("instruction_following", "correctness", "conciseness", "detail")
CONCISE_WORDS = 20  # at or under: fully concise
VERBOSE_WORDS = 100  # at or over: not concise at all

_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")


@functools.cache
def _registry():
    """lm-eval's IFEval registry, imported without its attempt to download nltk data.

    Its module downloads nltk's punkt tables on import when they are missing; this machine (and any
    offline cluster) cannot, and none of the checkers used here needs them.
    """
    import langdetect
    import nltk

    langdetect.DetectorFactory.seed = 0  # langdetect is random unless seeded; ratings must be reproducible
    download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from lm_eval.tasks.ifeval import instructions_registry
    finally:
        nltk.download = download
    # A checker logs an error for every text whose language it cannot detect (and counts it as
    # followed, which is IFEval's rule); that is not our user's error to read.
    logging.getLogger("lm_eval.tasks.ifeval.instructions").setLevel(logging.CRITICAL)
    return instructions_registry.INSTRUCTION_DICT


def ifeval_checker(instruction: Instruction):
    """The IFEval checker of ``instruction``, built with its arguments (ready to check)."""
    registry = _registry()
    if instruction.id not in registry:
        raise ValueError(f"unknown IFEval instruction {instruction.id!r}")
    checker = registry[instruction.id](instruction.id)
    checker.build_description(**instruction.kwargs)
    return checker


def count_words(text: str) -> int:
    """Words as IFEval counts them (runs of word characters)."""
    return len(_WORD.findall(text))


def numbers_in(text: str) -> list[float]:
    """Every number written in digits, in order ("1,200" is 1200)."""
    found = []
    for match in _NUMBER.findall(text):
        try:
            found.append(float(match.replace(",", "")))
        except ValueError:  # a stray "1,,2"
            continue
    return found


def instruction_following(response: str, instructions: Sequence[Instruction]) -> float | None:
    if not instructions:
        return None
    return sum(bool(ifeval_checker(instruction).check_following(response)) for instruction in instructions) / len(instructions)


def correctness(response: str, answer: int) -> float:
    numbers = numbers_in(response)
    if numbers and numbers[-1] == answer:
        return 1.0
    return 0.5 if answer in numbers else 0.0


def conciseness(response: str) -> float:
    words = count_words(response)
    return min(1.0, max(0.0, (VERBOSE_WORDS - words) / (VERBOSE_WORDS - CONCISE_WORDS)))


def detail(response: str, verification: Verification) -> float | None:
    points = verification.key_points
    if not points:
        return None
    if verification.kind == ARITHMETIC:
        numbers = set(numbers_in(response))
        return sum(float(point) in numbers for point in points) / len(points)
    return sum(bool(re.search(r"\b" + re.escape(point), response, flags=re.IGNORECASE)) for point in points) / len(points)


def score_response(response: str, verification: Verification) -> dict[str, float | None]:
    """Every dimension's score of ``response`` (None where the dimension does not apply)."""
    scores = {
        "instruction_following": instruction_following(response, verification.instructions),
        "correctness": correctness(response, verification.answer) if verification.kind == ARITHMETIC else None,
        "conciseness": conciseness(response),
        "detail": detail(response, verification),
    }
    if count_words(response) == 0:
        scores = {name: None if value is None else 0.0 for name, value in scores.items()}
    return scores


def rating(score: float | None) -> int | None:
    """A score in [0, 1] on the data's 1–5 scale (None stays None: N/A)."""
    return None if score is None else 1 + int(round(4 * score))


def mixed_score(scores: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """``Σ_k λ̃_k score_k`` over the dimensions that apply, λ renormalised over them (as the loss does)."""
    rated = {name: value for name, value in scores.items() if value is not None and weights.get(name, 0) > 0}
    total = sum(weights[name] for name in rated)
    if total == 0:
        return None
    return sum(weights[name] * value for name, value in rated.items()) / total
