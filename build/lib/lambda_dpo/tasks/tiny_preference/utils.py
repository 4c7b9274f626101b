"""Loading and building the offline tiny-preference tasks (lm-eval imports this by ``!function``).

Each task is a multiple-choice question over the embedded synthetic data (``lambda_dpo.data.
synthetic``): the prompt, its four responses as the choices, and as the answer the response
rated best on one dimension. The prompts come from a seed the tiny default never trains on.

Rebuild the shipped JSONL files with ``python -m lambda_dpo.tasks.tiny_preference.utils``.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
TASK_DIMENSIONS = {"tiny_helpful_mc": "helpfulness", "tiny_truthful_mc": "truthfulness"}
SEED = 7  # the tiny default trains on seed 0
NUM_PROMPTS = 400
DOCS_PER_TASK = 100


def load(data_file: str, **_metadata):
    """The task's JSONL as a ``DatasetDict`` with a ``test`` split. lm-eval passes the task's
    ``dataset_kwargs`` and its metadata as keyword arguments; only ``data_file`` matters here."""
    import datasets

    return datasets.load_dataset("json", data_files={"test": str(HERE / data_file)})


def unique_best(ratings: list) -> int | None:
    """The index of the single best rating (N/A, as None, is never best), or None on a tie or
    when fewer than two responses are rated."""
    rated = [rating for rating in ratings if rating is not None]
    if len(rated) < 2 or rated.count(max(rated)) > 1:
        return None
    return ratings.index(max(rated))


def build_docs(dimension: str, *, num_prompts: int = NUM_PROMPTS, seed: int = SEED, limit: int = DOCS_PER_TASK) -> list[dict]:
    from lambda_dpo.data.synthetic import synthetic_records

    docs = []
    for record in synthetic_records(num_prompts, seed=seed):
        completions = record["completions"]
        ratings = [completion["annotations"][dimension]["Rating"] for completion in completions]
        label = unique_best([None if rating == "N/A" else int(rating) for rating in ratings])
        if label is not None:
            docs.append({"prompt": record["instruction"], "choices": [c["response"] for c in completions], "label": label})
    if len(docs) < limit:
        raise ValueError(f"only {len(docs)} of {num_prompts} prompts have a unique best {dimension} response")
    return docs[:limit]


def main() -> None:
    for task, dimension in TASK_DIMENSIONS.items():
        docs = build_docs(dimension)
        with open(HERE / f"{task}.jsonl", "w") as file:
            for doc in docs:
                file.write(json.dumps(doc) + "\n")
        print(f"{task}: {len(docs)} docs")


if __name__ == "__main__":
    main()
