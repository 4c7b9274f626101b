"""Rule-based verifiers: a response's score in [0, 1] per dimension, or None where it does not apply.

Dimensions (documented with their reasons in docs/verifiable.md):

- ``instruction_following``: share of the prompt's IFEval instructions followed (strict check on
  the raw response); None when the prompt has none.
- ``correctness``: v1's word problems: 1 when the last number in the response is the answer,
  0.5 when the answer appears earlier, else 0; a calculation: 1 when the first number that is
  not an operand is the answer, 0.5 when the answer appears elsewhere, else 0; a fact: 1 when an
  accepted answer is named (a word prefix, or a whole number), else 0.
- ``conciseness``: 1 up to 20 words, falling linearly to 0 at 100 words.
- ``detail``: share of the request's key points covered: an explanation's key terms (as word
  prefixes, so "scatter" counts "scattering") or a fact's related terms, a word problem's
  intermediate result; None for a calculation (a one-step answer has no working to cover).

An empty response (no word at all) scores 0 in every dimension that applies. The rating on the
1–5 scale of the data is ``1 + round(4 · score)``.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from lambda_dpo.verifiable.ifeval import ifeval_checker
from lambda_dpo.verifiable.prompts import ARITHMETIC, CALCULATION, FACT, Instruction, Verification

VERIFIABLE_DIMENSIONS = ("instruction_following", "correctness", "conciseness", "detail")
CONCISE_WORDS = 20  # at or under: fully concise
VERBOSE_WORDS = 100  # at or over: not concise at all

_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")


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
    """A two-step word problem's (v1): the last number written is taken as the answer."""
    numbers = numbers_in(response)
    if numbers and numbers[-1] == answer:
        return 1.0
    return 0.5 if answer in numbers else 0.0


def calculation_correctness(response: str, verification: Verification) -> float:
    """The first number written that is not an operand is taken as the answer: "6 times 3 is 18"
    is right, as is "18"; restating the question first is not an answer."""
    operands = {float(point) for point in verification.key_points}
    numbers = numbers_in(response)
    stated = [number for number in numbers if number not in operands]
    if stated and stated[0] == verification.answer:
        return 1.0
    return 0.5 if verification.answer in numbers else 0.0


def names_answer(response: str, answers: Sequence[str]) -> bool:
    """Whether ``response`` names one of a fact's accepted answers: a word prefix ("butterfl"
    counts "butterflies"), or a number as a whole word ("8" does not count "80")."""
    return any(re.search(r"\b" + re.escape(answer) + (r"\b" if answer[-1].isdigit() else ""), response, flags=re.IGNORECASE) for answer in answers)


def correctness_of(response: str, verification: Verification) -> float | None:
    if verification.kind == ARITHMETIC:
        return correctness(response, verification.answer)
    if verification.kind == CALCULATION:
        return calculation_correctness(response, verification)
    if verification.kind == FACT:
        return float(names_answer(response, verification.answer))
    return None


def conciseness(response: str) -> float:
    words = count_words(response)
    return min(1.0, max(0.0, (VERBOSE_WORDS - words) / (VERBOSE_WORDS - CONCISE_WORDS)))


def detail(response: str, verification: Verification) -> float | None:
    points = verification.key_points
    if not points or verification.kind == CALCULATION:
        return None
    if verification.kind == ARITHMETIC:
        numbers = set(numbers_in(response))
        return sum(float(point) in numbers for point in points) / len(points)
    return sum(bool(re.search(r"\b" + re.escape(point), response, flags=re.IGNORECASE)) for point in points) / len(points)


def score_response(response: str, verification: Verification) -> dict[str, float | None]:
    """Every dimension's score of ``response`` (None where the dimension does not apply)."""
    scores = {
        "instruction_following": instruction_following(response, verification.instructions),
        "correctness": correctness_of(response, verification),
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
