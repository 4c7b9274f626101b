"""λ at inference time: the policy reads λ from a control preamble in its prompt (docs/method.md, "λ at inference").

With ``conditioning: prompt`` every training example's λ is rendered into its prompt (as the
chat template's system message where the tokenizer has one), so the policy learns to act on λ
and can be steered after training. The reference keeps the plain prompt, so the cached
reference log-probs serve every λ. Responses stay tokenised once; only prompts are re-encoded.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from lambda_dpo.data.encoding import EncodedExample, PromptFrame, render_prompt, tokenize_prompts
from lambda_dpo.data.records import ListwiseExample

CONDITIONING = ("none", "prompt")
# What the preamble spells λ as: the weights as numbers, then the 20-word mix; or the numbers alone
# (a pretrained model may read numbers that a tiny one cannot).
PREAMBLES = ("numbers+mix", "numbers")
DEFAULT_PREAMBLE = PREAMBLES[0]


MIX_TOKENS = 20


def lambda_preamble(weights: Sequence[float], dimensions: Sequence[str], preamble: str = DEFAULT_PREAMBLE) -> str:
    """The fixed-format control text, e.g. ``preference weights: helpfulness=0.70 honesty=0.30 |
    mix: helpfulness ×14 honesty ×6`` spelled out as 20 words (``preamble="numbers"``: without
    the ``| mix: …`` part).

    The numbers are for models that read them; the mix (each dimension's name repeated in
    proportion to its weight, 20 words in all) carries the same λ in a form that even a tiny
    model reads by averaging over the preamble.
    """
    if preamble not in PREAMBLES:
        raise ValueError(f"preamble must be one of {', '.join(PREAMBLES)}; got {preamble!r}")
    numbers = "preference weights: " + " ".join(f"{name}={float(w):.2f}" for name, w in zip(dimensions, weights))
    if preamble == "numbers":
        return numbers
    counts = _mix_counts(np.asarray(weights, dtype=float), MIX_TOKENS)
    return numbers + " | mix: " + " ".join(name for name, count in zip(dimensions, counts) for _ in range(count))


def preamble_corpus(dimensions: Sequence[str], seed: int, count: int = 4000, preamble: str = DEFAULT_PREAMBLE):
    """Preambles for every vertex and ``count`` λ ~ Dir(1): texts for a tokenizer trained on the
    data, so that a conditioned policy's preamble is a few tokens rather than characters."""
    rng = np.random.default_rng(seed)
    for weights in [*np.eye(len(dimensions)), *rng.dirichlet(np.ones(len(dimensions)), count)]:
        yield lambda_preamble(weights, dimensions, preamble)


def _mix_counts(weights: np.ndarray, total: int) -> list[int]:
    """Integer counts summing to ``total`` closest to ``weights · total`` (largest remainders)."""
    scaled = weights / weights.sum() * total
    counts = np.floor(scaled).astype(int)
    for index in np.argsort(-(scaled - counts), kind="stable")[: total - counts.sum()]:
        counts[index] += 1
    return counts.tolist()


def conditioned_prompt(prompt, weights: Sequence[float], dimensions: Sequence[str], tokenizer, preamble: str = DEFAULT_PREAMBLE) -> str:
    """The prompt text a λ-conditioned policy sees: the preamble joins the system message (the
    prompt's own, or the template's default one)."""
    return render_prompt(prompt, tokenizer, system=lambda_preamble(weights, dimensions, preamble))


class PromptConditioner:
    """Re-encodes the prompts of a batch of examples with their λ in the preamble.

    examples: the raw examples of one split, indexed by key (their prompts are re-rendered).
    max_prompt_length: the budget of the prompt *without* the preamble; a conditioned prompt
    gets the preamble's tokens on top, and a longer one keeps its head (template, system turn and
    preamble) and the end of the prompt.
    """

    def __init__(self, examples: Sequence[ListwiseExample], tokenizer, dimensions: Sequence[str], max_prompt_length: int, preamble: str = DEFAULT_PREAMBLE):
        self.prompts = {example.key: example.prompt for example in examples}
        self.tokenizer = tokenizer
        self.dimensions = list(dimensions)
        self.max_prompt_length = max_prompt_length
        self.preamble = preamble
        self.plain_head = PromptFrame.of(tokenizer).head

    def __call__(self, encoded: Sequence[EncodedExample], lambdas: np.ndarray) -> list[EncodedExample]:
        texts = [conditioned_prompt(self.prompts[e.key], w, self.dimensions, self.tokenizer, self.preamble) for e, w in zip(encoded, lambdas)]
        ids = tokenize_prompts(texts, self.tokenizer)
        # A prompt that fitted its budget plainly fits it with the preamble added; only the ones
        # cut when encoded need their conditioned frame measured.
        for i, example in enumerate(encoded):
            if len(example.prompt_ids) >= self.max_prompt_length:
                frame = PromptFrame.of(self.tokenizer, system=lambda_preamble(lambdas[i], self.dimensions, self.preamble))
                ids[i], _ = frame.fit(ids[i], self.max_prompt_length + frame.head - self.plain_head)
        return [dataclasses.replace(e, prompt_ids=tuple(i)) for e, i in zip(encoded, ids)]


def steerability(accuracy: np.ndarray) -> float:
    """Mean over k of (accuracy on dimension k under e_k − mean accuracy on k under the other vertices).

    accuracy: ``[m, m]``, row = the vertex λ given (e_k), column = per-dimension top-1 accuracy.
    0 for a model that ignores λ; larger when λ steers the policy towards its dimension.
    """
    accuracy = np.asarray(accuracy, dtype=float)
    m = accuracy.shape[0]
    if accuracy.shape != (m, m) or m < 2:
        raise ValueError(f"steerability needs an [m, m] matrix with m ≥ 2, got shape {accuracy.shape}")
    own = np.diag(accuracy)
    others = (accuracy.sum(axis=0) - own) / (m - 1)
    return float(np.mean(own - others))
