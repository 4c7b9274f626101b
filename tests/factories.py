"""Records in the real schemas, made by the tests (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

DIMENSIONS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def uf_aspect(dimension: str, rating: str, *, wrapped: bool = False):
    aspect = {"Rating": rating, "Rationale": f"Why {dimension} is {rating}."}
    if dimension in ("helpfulness", "truthfulness"):
        aspect.update({"Type": ["1"], "Rationale For Rating": "Because."})
    return [aspect] if wrapped else aspect


def uf_completion(response: str, ratings: dict[str, str], *, wrapped: bool = False) -> dict:
    return {
        "model": "gpt-4",
        "principle": "helpfulness",
        "custom_system_prompt": "Be helpful.",
        "response": response,
        "annotations": {d: uf_aspect(d, ratings[d], wrapped=wrapped) for d in DIMENSIONS},
        "fine-grained_score": 4.25,
        "overall_score": 7.5,
        "critique": "Fine.",
    }


def uf_record(instruction: str, completions: list[tuple[str, dict[str, str]]], *, wrapped: bool = False) -> dict:
    return {
        "source": "evol_instruct",
        "instruction": instruction,
        "models": ["gpt-4"] * len(completions),
        "correct_answers": ["None"],
        "incorrect_answers": ["None"],
        "completions": [uf_completion(text, ratings, wrapped=wrapped) for text, ratings in completions],
    }


def same_ratings(value: str) -> dict[str, str]:
    return {d: value for d in DIMENSIONS}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def verifiable_records(num_prompts: int, *, seed: int = 0) -> list[dict]:
    """A small verifiable set (real prompts and verification, responses written by rule) whose
    ratings differ within every prompt: one response covers the key points, one rambles, one is
    short and off topic, one is between."""
    from lambda_dpo.verifiable.build import rated_record
    from lambda_dpo.verifiable.prompts import ARITHMETIC, build_prompts

    records = []
    for prompt in build_prompts(num_prompts, seed=seed):
        facts = prompt.verification.key_points
        if prompt.verification.kind == ARITHMETIC:
            good = f"first {facts[0]}, so the answer is {prompt.verification.answer}"
        else:
            good = "in short: " + " and ".join(facts) + " matter most"
        responses = [good, "well, " * 60 + "it depends on many things", "no idea", good.split(",")[0] + " and more"]
        records.append(rated_record(prompt, responses, [True] * 4))
    return records
