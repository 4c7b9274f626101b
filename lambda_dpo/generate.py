"""Generation from a trained checkpoint, steered by λ when the policy is λ-conditioned."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from lambda_dpo.conditioning import conditioned_prompt
from lambda_dpo.data.encoding import render_prompt
from lambda_dpo.decoding import generate_batch
from lambda_dpo.lambdas import validate_lambda
from lambda_dpo.modeling import resolve_device
from lambda_dpo.checkpoint_eval import load_checkpoint_policy


class Generator:
    """A loaded checkpoint that answers prompts under a given λ.

    >>> generator = Generator("runs/tiny/checkpoints/step-300")
    >>> generator("Tell me about salt in cooking.", weights=[0.7, 0.1, 0.1, 0.1])
    """

    def __init__(self, checkpoint: str | Path):
        self.config, self.tokenizer, self.model = load_checkpoint_policy(checkpoint)
        self.device = resolve_device(self.config.model.device)
        self.dimensions = list(self.config.data.dimensions)

    def prompt_text(self, prompt, weights: Sequence[float] | None) -> str:
        if self.config.conditioning == "none":
            if weights is not None:
                raise ValueError("this checkpoint was trained with conditioning: none, so λ cannot steer it; "
                                 "train with conditioning=prompt, or leave --lambda out")
            return render_prompt(prompt, self.tokenizer)
        m = len(self.dimensions)
        weights = [1.0 / m] * m if weights is None else validate_lambda(weights, m, name="--lambda")
        return conditioned_prompt(prompt, weights, self.dimensions, self.tokenizer, self.config.preamble)

    def __call__(self, prompt, *, weights: Sequence[float] | None = None, max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0) -> str:
        """The response to ``prompt`` (a string or chat messages); greedy when ``temperature`` is 0."""
        torch.manual_seed(seed)
        texts = [self.prompt_text(prompt, weights)]
        return generate_batch(self.model, self.tokenizer, texts, max_new_tokens=max_new_tokens, temperature=temperature, device=self.device)[0].text


def generate(checkpoint: str | Path, prompt, *, weights: Sequence[float] | None = None, **options) -> str:
    """One response from ``checkpoint`` under λ = ``weights`` (see :class:`Generator`)."""
    return Generator(checkpoint)(prompt, weights=weights, **options)
