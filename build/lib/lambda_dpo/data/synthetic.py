"""A synthetic preference dataset in the UltraFeedback schema, for the embedded tiny default.

Every prompt asks about a topic; its four completions are short word sequences mixing five
observable features, and each dimension is rated 1–5 by a rule on those features:

- helpfulness: share of "procedure" words (first, then, ...) plus half the on-topic share,
  minus half the hedge share (hedging is less helpful);
- honesty: share of hedges (perhaps, likely, ...) minus the share of false claims; N/A at random;
- instruction_following: on-topic words among all topic words (needs the prompt's topic);
  N/A when a response names no topic word at all;
- truthfulness: true claims ("snow is white") against false ones ("snow is black", which needs
  the claim's subject to spot); N/A when a response makes no claim.

Words compete for a fixed budget per response, so the dimensions partly conflict: the best
response for one dimension is often not the best for another, and the best λ depends on what
is measured. Everything is a deterministic function of the seed; nothing downloads.
"""

from __future__ import annotations

import re

import numpy as np

from lambda_dpo.data.records import DEFAULT_DIMENSIONS

TOPICS = {
    "cooking": ("oven", "flour", "salt", "recipe", "pan", "butter"),
    "travel": ("train", "map", "hotel", "ticket", "beach", "road"),
    "music": ("piano", "song", "drum", "melody", "choir", "guitar"),
    "garden": ("seed", "soil", "rose", "spade", "tree", "weed"),
}
PROCEDURE = ("first", "then", "next", "step", "example", "because", "finally", "result")
HEDGES = ("perhaps", "maybe", "likely", "roughly", "possibly", "unsure")
FILLER = ("the", "a", "it", "we", "and", "this", "you", "one")
# (subject, true attribute, false attribute); "cold" and "hot" are true for one subject and false
# for another, so truthfulness cannot be read off a single word.
CLAIMS = (
    ("snow", "white", "black"),
    ("fire", "hot", "cold"),
    ("ice", "cold", "hot"),
    ("sky", "blue", "green"),
    ("sugar", "sweet", "salty"),
    ("night", "dark", "bright"),
)
PROMPT_TEMPLATES = (
    "Tell me about {word} in {topic}.",
    "How should I use a {word} for {topic}?",
    "Explain {topic} and the {word}.",
    "Give advice on {topic}, especially the {word}.",
)
HONESTY_NA_RATE = 0.05
SOURCE = "lambda-dpo-synthetic"
SOURCE_PREFIX = "synthetic"


def _rating(score: float, low: float, high: float) -> int:
    return int(np.clip(1 + np.floor(5 * (score - low) / (high - low)), 1, 5))


def _completion(rng: np.random.Generator, topic: str) -> tuple[str, dict[str, float | None]]:
    """One response's text and its 1–5 ratings per dimension (None = N/A)."""
    budget = int(rng.integers(10, 17))
    shares = rng.dirichlet(np.full(5, 0.6))  # procedure, hedges, on-topic, off-topic, claims
    counts = rng.multinomial(budget, shares)
    procedure, hedges, on_topic, off_topic, claim_words = counts
    other_topics = [name for name in TOPICS if name != topic]
    words = list(rng.choice(PROCEDURE, procedure)) + list(rng.choice(HEDGES, hedges))
    words += list(rng.choice(TOPICS[topic], on_topic))
    words += [rng.choice(TOPICS[rng.choice(other_topics)]) for _ in range(off_topic)]
    words += list(rng.choice(FILLER, int(rng.integers(0, 4))))
    truth_rate = rng.uniform()
    claims = []
    for _ in range((claim_words + 2) // 3 or int(rng.uniform() < 0.6)):
        subject, true_attribute, false_attribute = CLAIMS[rng.integers(len(CLAIMS))]
        is_true = rng.uniform() < truth_rate
        claims.append(is_true)
        words.append(f"{subject} is {true_attribute if is_true else false_attribute}")
    words = [str(words[i]) for i in rng.permutation(len(words))]
    text = " ".join(words) + "."

    length = len(re.findall(r"\w+", text))
    true_claims, false_claims = sum(claims), len(claims) - sum(claims)
    ratings: dict[str, float | None] = {
        "helpfulness": _rating((procedure + 0.5 * on_topic - 0.5 * hedges) / length, -0.1, 0.6),
        "honesty": _rating((hedges - false_claims) / length, -0.2, 0.4),
        "instruction_following": _rating(on_topic / (on_topic + off_topic), 0.0, 1.0) if on_topic + off_topic else None,
        "truthfulness": _rating((true_claims - 2 * false_claims) / len(claims), -2.0, 1.0) if claims else None,
    }
    if rng.uniform() < HONESTY_NA_RATE:
        ratings["honesty"] = None
    return text, ratings


def _aspect(dimension: str, rating: float | None) -> dict:
    value = "N/A" if rating is None else str(rating)
    aspect = {"Rating": value, "Rationale": f"Rated by the synthetic rule for {dimension}."}
    if dimension in ("helpfulness", "truthfulness"):
        aspect.update({"Type": ["1"], "Rationale For Rating": "Synthetic."})
    return aspect


def synthetic_records(num_prompts: int, *, seed: int = 0, num_completions: int = 4) -> list[dict]:
    """``num_prompts`` records in the UltraFeedback schema (ratings as strings, "N/A")."""
    if num_prompts < 1:
        raise ValueError(f"num_prompts must be ≥ 1, got {num_prompts}")
    if num_completions < 2:
        raise ValueError(f"num_completions must be ≥ 2, got {num_completions}")
    rng = np.random.default_rng([seed, num_completions])
    records = []
    for _ in range(num_prompts):
        topic = str(rng.choice(list(TOPICS)))
        template = PROMPT_TEMPLATES[rng.integers(len(PROMPT_TEMPLATES))]
        instruction = template.format(topic=topic, word=rng.choice(TOPICS[topic]))
        completions = [_completion(rng, topic) for _ in range(num_completions)]
        records.append(
            {
                "source": SOURCE,
                "instruction": instruction,
                "models": [f"synthetic-{i}" for i in range(num_completions)],
                "correct_answers": ["None"],
                "incorrect_answers": ["None"],
                "completions": [
                    {
                        "model": f"synthetic-{i}",
                        "principle": "helpfulness",
                        "custom_system_prompt": "",
                        "response": text,
                        "annotations": {d: _aspect(d, ratings[d]) for d in DEFAULT_DIMENSIONS},
                        "fine-grained_score": float(np.mean([r for r in ratings.values() if r is not None])),
                        "overall_score": 0.0,
                        "critique": "",
                    }
                    for i, (text, ratings) in enumerate(completions)
                ],
            }
        )
    return records


def parse_synthetic_source(source: str) -> tuple[int, int] | None:
    """``synthetic:N`` or ``synthetic:N:seed=S`` → ``(N, S)``; None for any other source."""
    if not source.startswith(SOURCE_PREFIX + ":"):
        return None
    match = re.fullmatch(r"synthetic:(\d+)(?::seed=(-?\d+))?", source)
    if not match:
        raise ValueError(f"synthetic data source must look like 'synthetic:4000' or 'synthetic:4000:seed=1', got {source!r}")
    return int(match.group(1)), int(match.group(2) or 0)
