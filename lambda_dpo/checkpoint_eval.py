"""Evaluating a policy: the held-out ranking metrics and the generation scores of a run's final policy, and the
same for a saved checkpoint (``lambda-dpo evaluate``, ``generate``, the benchmarks) at any evaluation λ."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lambda_dpo import checkpoints
from lambda_dpo.benchmarks import BenchmarkConfig, run_benchmarks
from lambda_dpo.conditioning import lambda_preamble, steerability
from lambda_dpo.config import load_config
from lambda_dpo.data.loading import load_examples
from lambda_dpo.distributed import on_rank_zero
from lambda_dpo.evaluate import evaluate_policy
from lambda_dpo.modeling import (
    ReferenceCache,
    fingerprint,
    load_tokenizer,
    resolve_device,
)
from lambda_dpo.policy import load_policy
from lambda_dpo.reference import fill_reference_cache, load_run_base
from lambda_dpo.reporting import track
from lambda_dpo.run_setup import NullReporter, RunSetup, load_datasets, prepare_run, prompt_renderer, rekey, use_threads
from lambda_dpo.train_config import TrainConfig

GENERATIONS = "generations.jsonl"  # per-prompt greedy responses and scores of the final evaluation (eval.generate)


def held_out_metrics(model, setup: RunSetup, cache: ReferenceCache, weights: np.ndarray) -> dict[str, float]:
    """Every ranking metric of ``model`` on the held-out split at the evaluation λ ``weights``."""
    return evaluate_policy(
        model, setup.encoded["eval"], setup.collator, cache, loss=setup.config.loss, eval_lambda=weights, dimensions=setup.dimensions,
        batch_size=setup.config.eval.batch_size, device=setup.device, autocast_dtype=setup.autocast_dtype, conditioner=setup.conditioners["eval"],
    )


def generation_scores(setup: RunSetup, model, weights, *, plain: bool = False, max_new_tokens: int | None = None):
    """:class:`~lambda_dpo.verifiable.scoring.GenerationScores` of ``model``'s greedy responses to the
    held-out prompts at the evaluation λ ``weights``.

    plain: the model reads plain prompts (the reference, which never saw a preamble)."""
    from lambda_dpo.verifiable.scoring import score_generations

    config, reporter = setup.config, setup.reporter
    return score_generations(
        model, setup.tokenizer, setup.examples["eval"], weights=list(weights), dimensions=setup.dimensions,
        render=prompt_renderer(config, setup.tokenizer, None if plain else weights), max_new_tokens=max_new_tokens or config.eval.max_new_tokens,
        batch_size=config.eval.generation_batch_size, track=lambda iterable, total, description: track(reporter, iterable, total=total, description=description),
    )


def final_generation_metrics(setup: RunSetup, model, weights) -> dict[str, float]:
    """The generation metrics of the final evaluation; each prompt's response goes to ``generations.jsonl``."""
    scores = generation_scores(setup, model, weights)
    write_rows(setup.run_dir / GENERATIONS, scores.rows)
    return scores.metrics


def write_rows(path: Path, rows) -> None:
    """JSON lines, written beside and renamed, so a reader never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(row) + "\n" for row in rows))
    partial.replace(path)


def final_evaluation(setup: RunSetup, model, eval_cache: ReferenceCache, benchmark_tasks) -> dict[str, float]:
    """The held-out metrics of the trained policy, with its generations (``eval.generate``) and lm-eval
    benchmarks when configured; rank 0 generates and runs lm-eval while the others wait for its numbers."""
    config, eval_lambda = setup.config, setup.eval_lambda()
    final = held_out_metrics(model, setup, eval_cache, eval_lambda)
    if config.eval.generate:
        final |= on_rank_zero(lambda: final_generation_metrics(setup, model, eval_lambda))
    if benchmark_tasks is not None:
        benchmarks = benchmarks_for_policy(config)
        final |= on_rank_zero(lambda: run_benchmarks(model, setup.tokenizer, benchmarks, manager=benchmark_tasks, autocast=config.model.autocast)["metrics"])
    return final


def benchmarks_for_policy(config: TrainConfig, benchmarks: BenchmarkConfig | None = None) -> BenchmarkConfig:
    """``benchmarks`` (default the run's own) as this run's policy is prompted: a λ-conditioned
    one reads the preamble of the run's evaluation λ as the system instruction (unless one is set)."""
    benchmarks = benchmarks or config.benchmarks
    if config.conditioning == "none" or benchmarks.system_instruction is not None:
        return benchmarks
    eval_lambda = config.eval.mixed_lambda(len(config.data.dimensions))
    return dataclasses.replace(benchmarks, system_instruction=lambda_preamble(eval_lambda, config.data.dimensions, config.preamble))


def load_checkpoint_config(checkpoint: Path) -> TrainConfig:
    """The config saved in ``checkpoint``; anything but a checkpoint directory is refused before a
    file is read or written (a run directory also holds a config.yaml)."""
    checkpoint = checkpoints.require_checkpoint(checkpoint)
    if not (checkpoint / "config.yaml").exists():
        raise FileNotFoundError(f"{checkpoint} is not a checkpoint directory (no config.yaml)")
    return load_config(TrainConfig, checkpoint / "config.yaml")


def open_checkpoint(checkpoint: str | Path) -> tuple[Path, TrainConfig, Path]:
    """``(checkpoint, config, run_dir)`` of a saved checkpoint, with this process set to the run's
    ``threads`` (on its default thread count, evaluation ran 10x slower on 2 cores)."""
    checkpoint = Path(checkpoint)
    config = load_checkpoint_config(checkpoint)
    use_threads(config)
    return checkpoint, config, checkpoint.parent.parent


def load_checkpoint_policy(checkpoint: str | Path, *, reference: bool = False):
    """``(config, tokenizer, model)`` of a saved checkpoint, in eval mode on the run's device;
    with ``reference`` the run's reference model (what the fine-tune started from) instead."""
    checkpoint, config, run_dir = open_checkpoint(checkpoint)
    tokenizer = load_tokenizer(config.model, saved=run_dir / "tokenizer")
    base = load_run_base(config, run_dir)
    model = base if reference else load_policy(config, base, checkpoint)
    return config, tokenizer, model.eval()


def checkpoint_setup(checkpoint: Path, *, data: str | None = None) -> tuple[RunSetup, str]:
    """The set-up of a saved checkpoint's run with one split, "eval": the run's held-out split, or
    ``data`` (any source); and the name its reference log-probs are cached under."""
    checkpoint, config, run_dir = open_checkpoint(checkpoint)
    if data is None:
        examples, cache_name = load_datasets(config)[1], "eval"
    else:
        options = dict(dimensions=config.data.dimensions, format="auto", on_bad_record=config.data.on_bad_record, rating_scale=config.data.rating_scale)
        examples, cache_name = rekey(load_examples(data, **options)[0]), "eval-" + fingerprint(data)
    return prepare_run(config, run_dir, resolve_device(config.model.device), NullReporter(), {"eval": examples}), cache_name


def checkpoint_evaluator(checkpoint: Path, *, data: str | None = None):
    """A function ``weights → metrics`` scoring a saved checkpoint at any evaluation λ.

    The data is the run's held-out split, or ``data`` (any source). The reference comes from the
    run (adapter disabled, or the saved reference weights) and its log-probs from the run's
    cache when they were computed for the same data. A λ-conditioned policy sees ``weights`` in
    its prompts; for any policy they define the mixed target.
    """
    setup, cache_name = checkpoint_setup(checkpoint, data=data)
    base = load_run_base(setup.config, setup.run_dir)
    cache = fill_reference_cache(setup, "eval", base, name=cache_name)
    model = load_policy(setup.config, base, Path(checkpoint))
    del base
    return lambda weights=None: held_out_metrics(model, setup, cache, setup.eval_lambda(weights))


def checkpoint_generations(checkpoint: Path, *, data: str | None = None, weights: Sequence[float] | None = None, reference: bool = False,
                           max_new_tokens: int | None = None, reporter=None):
    """Generation scores of a saved checkpoint (or, with ``reference``, of the model it started from)
    on the run's held-out split or ``data``, at λ ``weights`` (default: the run's ``eval.weights``)."""
    setup, _ = checkpoint_setup(checkpoint, data=data)
    setup.reporter = reporter or setup.reporter
    base = load_run_base(setup.config, setup.run_dir)
    model = (base if reference else load_policy(setup.config, base, Path(checkpoint))).eval()
    return generation_scores(setup, model, setup.eval_lambda(weights), plain=reference, max_new_tokens=max_new_tokens)


@dataclass
class Steerability:
    """Per-dimension top-1 accuracy under each vertex λ, and the steerability scalar."""

    dimensions: list[str]
    accuracy: np.ndarray  # [m, m]: row = e_k given, column = top1_accuracy/<dimension>
    centroid: dict[str, float]  # every metric at the centroid λ
    score: float

    def as_json(self) -> dict:
        """The form ``evaluate --steerability`` writes to ``steerability.json``."""
        return {"dimensions": self.dimensions, "accuracy": self.accuracy.tolist(), "steerability": self.score, "centroid": self.centroid}


def steerability_of(evaluate, dimensions: Sequence[str]) -> Steerability:
    """Evaluate at every vertex e_k and the centroid with ``evaluate(weights) → metrics``."""
    m = len(dimensions)
    rows = [evaluate(list(np.eye(m)[k])) for k in range(m)]
    accuracy = np.array([[row[f"top1_accuracy/{d}"] for d in dimensions] for row in rows])
    return Steerability(list(dimensions), accuracy, evaluate([1.0 / m] * m), steerability(accuracy))
