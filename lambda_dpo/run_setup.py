"""What a run prepares before its first step: data loaded, split and tokenised once, the tokenizer, the λ sampler,
the prompt conditioners, and the batches the loop and the warm start draw (docs/method.md)."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lambda_dpo.conditioning import PromptConditioner, conditioned_prompt, preamble_corpus
from lambda_dpo.console import logger
from lambda_dpo.data.collate import ListwiseCollator
from lambda_dpo.data.encoding import EncodedExample, encode_with_report, render_prompt
from lambda_dpo.data.loading import DataConfig, load_examples
from lambda_dpo.data.records import ListwiseExample
from lambda_dpo.evaluate import EvalConfig
from lambda_dpo.lambdas import build_sampler, lambdas_for_examples, validate_lambda, weighted_dimensions
from lambda_dpo.modeling import (
    check_vocabulary,
    load_tokenizer,
)
from lambda_dpo.precision import autocast_context, resolve_autocast
from lambda_dpo.preferences import MIN_RATED_RESPONSES
from lambda_dpo.reporting import Reporter
from lambda_dpo.train_config import TrainConfig


def split_examples(examples: list[ListwiseExample], config: EvalConfig) -> tuple[list[ListwiseExample], list[ListwiseExample]]:
    """Hold out ``config.fraction`` of the examples by a fixed permutation."""
    order = np.random.default_rng(config.split_seed).permutation(len(examples))
    held_out = max(1, int(round(config.fraction * len(examples))))
    if held_out >= len(examples):
        raise ValueError(f"eval.fraction {config.fraction} leaves no training examples out of {len(examples)}")
    return [examples[i] for i in order[held_out:]], [examples[i] for i in order[:held_out]]


def rekey(examples: list[ListwiseExample]) -> list[ListwiseExample]:
    """Keys 0..n-1 within a split: they seed each example's λ and index the reference cache."""
    return [dataclasses.replace(example, key=key) for key, example in enumerate(examples)]


def load_datasets(config: TrainConfig) -> tuple[list[ListwiseExample], list[ListwiseExample]]:
    """The training and held-out examples; skipped records are reported, and training data that
    carries no preference under the run's λ is refused before anything else happens."""
    data = config.data
    options = dict(dimensions=data.dimensions, format=data.format, on_bad_record=data.on_bad_record, rating_scale=data.rating_scale)
    examples, report = load_examples(data.source, split=data.split, limit=data.limit, **options)
    reports = [report]
    if config.eval.source is None:
        train_examples, eval_examples = split_examples(examples, config.eval)
    else:
        train_examples = examples
        eval_examples, eval_report = load_examples(config.eval.source, split=config.eval.split, limit=config.eval.limit, **options)
        reports.append(eval_report)
    for loaded in reports:
        if loaded.skipped:
            logger.warning(loaded.summary())
    if config.eval.limit is not None:
        eval_examples = eval_examples[: config.eval.limit]
    check_signal(train_examples, config)
    return rekey(train_examples), rekey(eval_examples)


def check_signal(examples: list[ListwiseExample], config: TrainConfig) -> None:
    """Refuse training data in which no prompt has two rated responses in a dimension the run's λ
    weights: the loss would be zero at every step (a no-op run that exits as if it had trained)."""
    in_play = weighted_dimensions(config.lambdas, len(config.data.dimensions))
    rated = np.stack([(~np.isnan(e.ratings)).sum(axis=1) >= MIN_RATED_RESPONSES for e in examples])  # [n, m]
    if (rated & in_play).any():
        return
    counts = ", ".join(f"{name} {int(rated[:, k].sum())}" + ("" if in_play[k] else " (λ weight 0)") for k, name in enumerate(config.data.dimensions))
    raise ValueError(f"{config.data.source}: no training prompt can be ranked under the run's λ: none of {len(examples)} has "
                     f"{MIN_RATED_RESPONSES} rated responses in a dimension λ weights (prompts with {MIN_RATED_RESPONSES}+ rated, by dimension: {counts})")


def encode(examples: list[ListwiseExample], tokenizer, data: DataConfig, *, name: str = "data") -> list[EncodedExample]:
    """Token ids of ``examples``; a warning says how many prompts and responses were cut to fit."""
    encoded, report = encode_with_report(examples, tokenizer, max_prompt_length=data.max_prompt_length, max_length=data.max_length)
    if report.summary(name):
        logger.warning(report.summary(name))
    return encoded


def example_texts(examples: list[ListwiseExample]):
    for example in examples:
        yield example.prompt if isinstance(example.prompt, str) else " ".join(m["content"] for m in example.prompt)
        yield from example.responses


def tokenizer_corpus(config: TrainConfig, examples: list[ListwiseExample]):
    """Texts for a tokenizer trained on the data (``model.tokenizer: train``), λ preambles included."""
    yield from example_texts(examples)
    if config.conditioning == "prompt":
        yield from preamble_corpus(config.data.dimensions, config.seed, preamble=config.preamble)


def batch_order(num_examples: int, batch_size: int, seed: int, micro_step: int) -> tuple[list[int], int]:
    """The example indices of global micro-batch ``micro_step`` and its epoch.

    Each epoch is a fresh permutation seeded by ``(seed, epoch)``, so any micro-batch can be
    found again after a resume without replaying the ones before it.
    """
    per_epoch = num_examples // batch_size
    if per_epoch == 0:
        raise ValueError(f"optim.batch_size {batch_size} exceeds the {num_examples} training examples")
    epoch, position = divmod(micro_step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return order[position * batch_size : (position + 1) * batch_size].tolist(), epoch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def use_threads(config: TrainConfig) -> None:
    """Apply the config's ``threads`` (torch's intra-op threads) to this process."""
    if config.threads:
        torch.set_num_threads(config.threads)


@dataclass
class RunSetup:
    """What a run prepares before its first step (data, tokenizer, λ sampler, prompt conditioning),
    shared by the loop and its helpers. ``examples`` and ``encoded`` hold the splits by name
    ("train", "eval"); a checkpoint's evaluation has only "eval"."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    reporter: Reporter
    tokenizer: object
    collator: ListwiseCollator
    sampler: object
    examples: dict[str, list[ListwiseExample]]
    encoded: dict[str, list[EncodedExample]]
    conditioners: dict[str, PromptConditioner | None]

    @property
    def dimensions(self) -> list[str]:
        return list(self.config.data.dimensions)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return resolve_autocast(self.config.model.autocast, self.device)

    @property
    def autocast(self):
        return autocast_context(self.device, self.autocast_dtype)

    def eval_lambda(self, weights: Sequence[float] | None = None) -> np.ndarray:
        """The evaluation λ: ``weights`` checked, or the run's ``eval.weights`` (the centroid)."""
        m = len(self.dimensions)
        return self.config.eval.mixed_lambda(m) if weights is None else validate_lambda(weights, m, name="--lambda")


def prepare_run(config: TrainConfig, run_dir: Path, device: torch.device, reporter: Reporter, splits: dict[str, list[ListwiseExample]]) -> RunSetup:
    """Tokenizer (saved with the run), each split tokenised once, the collator, the λ sampler and
    the prompt conditioners."""
    tokenizer = load_tokenizer(config.model, training_texts=tokenizer_corpus(config, splits.get("train", [])), saved=run_dir / "tokenizer")
    check_vocabulary(config.model, tokenizer)
    names = {"train": "training data", "eval": "held-out data"}
    return RunSetup(
        config=config, run_dir=run_dir, device=device, reporter=reporter, tokenizer=tokenizer,
        collator=ListwiseCollator(tokenizer.pad_token_id, target_temperature=config.data.target_temperature, layout=config.data.layout(tokenizer.pad_token_id)),
        sampler=build_sampler(config.lambdas, config.data.dimensions),
        examples=splits,
        encoded={split: encode(examples, tokenizer, config.data, name=names[split]) for split, examples in splits.items()},
        conditioners={split: make_conditioner(config, examples, tokenizer) for split, examples in splits.items()},
    )


def make_conditioner(config: TrainConfig, examples, tokenizer) -> PromptConditioner | None:
    if config.conditioning == "none":
        return None
    return PromptConditioner(examples, tokenizer, config.data.dimensions, config.data.max_prompt_length, config.preamble)


def training_batch(setup: RunSetup, indices, epoch: int, conditioner):
    """The collated batch of training examples ``indices`` and their λ ``[B, m]`` (rendered into
    the prompts by ``conditioner`` when the policy is λ-conditioned)."""
    chunk = [setup.encoded["train"][i] for i in indices]
    lambdas = lambdas_for_examples(setup.sampler, [example.key for example in chunk], seed=setup.config.lambdas.seed, epoch=epoch)
    if conditioner is not None:
        chunk = conditioner(chunk, lambdas)
    return setup.collator(chunk), torch.as_tensor(lambdas, dtype=torch.float32)


def prompt_renderer(config: TrainConfig, tokenizer, weights: Sequence[float] | None):
    """The prompt text the policy reads at evaluation: plain, or with the λ preamble when the run
    is λ-conditioned (``weights`` None: a plain prompt, as the reference reads it)."""
    if config.conditioning == "none" or weights is None:
        return lambda example: render_prompt(example.prompt, tokenizer)
    return lambda example: conditioned_prompt(example.prompt, weights, config.data.dimensions, tokenizer, config.preamble)


class NullReporter:
    def report(self, metrics, *, step, checkpoint=None):
        pass

    def close(self):
        pass
