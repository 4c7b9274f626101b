"""The λ-DPO training loop: one function, read top to bottom, the same standalone and under Ray.

Run directory (``output_dir``)::

    config.yaml               the resolved config
    tokenizer/                the tokenizer (trained here for the tiny default)
    reference/                the reference weights, when they are not ``model.name_or_path``
                              unchanged (random init, or after the SFT warm start)
    reference_logps/*.pt      reference log-probs of the train and eval sets, computed once
    checkpoints/step-N/       adapter (or full) weights in safetensors, training_state.pt, config.yaml
    metrics.jsonl, tensorboard/, eval.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from lambda_dpo.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Interval, check_settings, setting
from lambda_dpo import checkpoints
from lambda_dpo.checkpoints import checkpoint_dirs, latest_checkpoint, load_training_state, rng_state, set_rng_state
from lambda_dpo.benchmarks import BenchmarkConfig, check_tasks, run_benchmarks, task_manager
from lambda_dpo.conditioning import CONDITIONING, DEFAULT_PREAMBLE, PREAMBLES, PromptConditioner, conditioned_prompt, lambda_preamble, preamble_corpus, steerability
from lambda_dpo.config import load_config, save_config
from lambda_dpo.data.collate import ListwiseCollator, longest_first
from lambda_dpo.console import logger
from lambda_dpo.data.encoding import EncodedExample, encode_with_report, render_prompt
from lambda_dpo.data.loading import DataConfig, load_examples
from lambda_dpo.data.records import ListwiseExample
from lambda_dpo.distributed import data_parallel, global_sum, gradient_sync, on_rank_zero, rank_and_world, rank_zero_first
from lambda_dpo.evaluate import EvalConfig, evaluate_policy
from lambda_dpo.lambdas import LambdaConfig, build_sampler, lambdas_for_examples, validate_lambda, weighted_dimensions
from lambda_dpo.loss import mixed_target
from lambda_dpo.preferences import MIN_RATED_RESPONSES
from lambda_dpo.metrics import peak_memory_mb
from lambda_dpo.modeling import (
    ModelConfig,
    ReferenceCache,
    ResponseScorer,
    add_lora,
    check_layout_support,
    enable_gradient_checkpointing,
    fingerprint,
    is_lora,
    load_base_model,
    check_vocabulary,
    load_tokenizer,
    peft_quietly,
    resolve_device,
    response_logps,
    sequence_logps,
    to_device,
)
from lambda_dpo.objective import PAIRWISE_LOSSES, LossConfig, compute_objective, pairwise_batch
from lambda_dpo.reporting import Reporter, track

GENERATIONS = "generations.jsonl"  # per-prompt greedy responses and scores of the final evaluation (eval.generate)
ON_NONFINITE = ("raise", "skip")


class NonFiniteError(ValueError):
    """Training met a non-finite loss or gradient norm (``optim.on_nonfinite: raise``)."""


@dataclass
class OptimConfig:
    """AdamW with a cosine schedule and linear warm-up, over optimizer steps."""

    learning_rate: float = setting(5e-5, within=POSITIVE, help='peak AdamW learning rate')
    weight_decay: float = setting(0.0, within=NON_NEGATIVE, help='AdamW weight decay')
    warmup_ratio: float = setting(0.1, within=Interval(0, 1, "left"), help='share of max_steps of linear warm-up before the cosine decay, in [0, 1)')
    max_steps: int = setting(1000, within=AT_LEAST_ONE, help='optimizer steps (ignored when `epochs` is set)')
    epochs: Optional[float] = setting(None, within=POSITIVE, help='passes over the training set; sets max_steps once the data is loaded')
    batch_size: int = setting(4, within=AT_LEAST_ONE, help='prompts per micro-batch (each brings its N responses)')
    gradient_accumulation: int = setting(1, within=AT_LEAST_ONE, help='micro-batches per optimizer step')
    max_grad_norm: float = setting(1.0, within=POSITIVE, help='gradient norm clipping')
    on_nonfinite: str = setting("raise", help="raise: stop at a non-finite loss or gradient norm | skip: drop that step's update and count it", choices=ON_NONFINITE)

    def __post_init__(self) -> None:
        check_settings(self, "optim")

    def steps_for(self, num_examples: int) -> "OptimConfig":
        """This config with ``max_steps`` set from ``epochs`` over ``num_examples`` prompts."""
        if self.epochs is None:
            return self
        per_step = self.batch_size * self.gradient_accumulation
        return dataclasses.replace(self, max_steps=max(1, math.ceil(self.epochs * num_examples / per_step)))


@dataclass
class SFTConfig:
    """Optional warm start for base models: NLL on each prompt's best response under its λ."""

    steps: int = setting(0, within=NON_NEGATIVE, help='0 = no warm start')
    learning_rate: float = setting(1e-3, within=POSITIVE, help='learning rate of the warm start')
    batch_size: int = setting(16, within=AT_LEAST_ONE, help='prompts per warm-start step (each trains on its best response)')

    def __post_init__(self) -> None:
        check_settings(self, "sft")


@dataclass
class TrainConfig:
    """One λ-DPO fine-tune."""

    output_dir: str = setting("runs/train", help='the run directory (config, checkpoints, metrics, eval.json)')
    seed: int = setting(0, help='seed of weights, batch order and dropout')
    threads: Optional[int] = setting(None, within=AT_LEAST_ONE, help='torch intra-op threads (1 is fastest for the tiny model on 2 cores)')
    conditioning: str = setting("none", help='none | prompt: λ rendered into the prompt, so λ steers the policy at inference', choices=CONDITIONING)
    preamble: str = setting(DEFAULT_PREAMBLE, help="the λ preamble of conditioning: prompt: numbers+mix (the weights, then each name repeated in proportion) | numbers (the weights only)", choices=PREAMBLES)
    reference_cache: Optional[str] = setting(None, path=True, help="directory of reference log-prob caches shared by runs of the same model and data (a sweep's trials, a benchmark's runs), each file named by what it was computed from; unset: the run's own reference_logps/")
    model: ModelConfig = setting(default_factory=ModelConfig, help='')
    data: DataConfig = setting(default_factory=DataConfig, help='')
    eval: EvalConfig = setting(default_factory=EvalConfig, help='')
    lambdas: LambdaConfig = setting(default_factory=LambdaConfig, help='')
    loss: LossConfig = setting(default_factory=LossConfig, help='')
    optim: OptimConfig = setting(default_factory=OptimConfig, help='')
    sft: SFTConfig = setting(default_factory=SFTConfig, help='')
    benchmarks_config: Optional[str] = setting(None, help='YAML of `benchmarks` (e.g. configs/eval/paper.yaml); `benchmarks.*` keys override it')
    benchmarks: BenchmarkConfig = setting(default_factory=BenchmarkConfig, help='lm-eval tasks run on the final policy')
    log_every: int = setting(10, within=AT_LEAST_ONE, help='report training metrics every this many steps')
    save_every: int = setting(0, within=NON_NEGATIVE, help='checkpoint every this many steps (0 = only at the end)')
    keep_checkpoints: int = setting(2, within=AT_LEAST_ONE, help='the newest this many step checkpoints are kept')

    def __post_init__(self) -> None:
        check_settings(self)
        # λ given by the user are checked against the data's dimensions before anything runs.
        build_sampler(self.lambdas, self.data.dimensions)
        self.eval.mixed_lambda(len(self.data.dimensions))
        if self.eval.generate:
            from lambda_dpo.verifiable.scoring import check_dimensions

            check_dimensions(self.data.dimensions)


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A fine-tune's config from YAML and ``key=value`` overrides (``benchmarks_config`` read in)."""
    return load_config(TrainConfig, path, overrides, base_files={"benchmarks": "benchmarks_config"})


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    metrics: dict[str, float]  # final held-out evaluation


# ----------------------------------------------------------------------------- data


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


# ----------------------------------------------------------------------------- state


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model, optim: OptimConfig, *, learning_rate: float | None = None, total_steps: int | None = None):
    from transformers import get_cosine_schedule_with_warmup

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate or optim.learning_rate, weight_decay=optim.weight_decay)
    total = total_steps or optim.max_steps
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, int(optim.warmup_ratio * total), total)
    return optimizer, lr_schedule


def save_checkpoint(run_dir: Path, step: int, model, optimizer, lr_schedule, config: TrainConfig) -> Path:
    """``checkpoints/step-N``: weights, optimizer, learning-rate schedule and RNG state, and config (lambda_dpo.checkpoints)."""
    state = {"optimizer": optimizer.state_dict(), "lr_schedule": lr_schedule.state_dict(), "rng": rng_state()}
    return checkpoints.save_checkpoint(run_dir, step, model, state, lambda directory: save_config(config, directory), keep=config.keep_checkpoints)


# ----------------------------------------------------------------------------- the run's set-up


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
    def autocast(self):
        return autocast_context(self.device)

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


# ----------------------------------------------------------------------------- model


def build_reference_weights(setup: RunSetup):
    """The base model the preference stage starts from, saved under ``run_dir/reference`` when
    it differs from ``model.name_or_path`` (random init, SFT warm start). Reused on resume."""
    config, saved = setup.config, setup.run_dir / "reference"
    if (saved / "config.json").exists():
        return load_base_model(config.model, weights=saved)
    seed_everything(config.seed)
    base = load_base_model(config.model, vocab_size=len(setup.tokenizer))
    if config.sft.steps:
        base = sft_warm_start(base, setup)
    if config.model.uses_random_init() or config.sft.steps:
        base.save_pretrained(saved, safe_serialization=True)
    return base


def training_batch(setup: RunSetup, indices, epoch: int, conditioner):
    """The collated batch of training examples ``indices`` and their λ ``[B, m]`` (rendered into
    the prompts by ``conditioner`` when the policy is λ-conditioned)."""
    chunk = [setup.encoded["train"][i] for i in indices]
    lambdas = lambdas_for_examples(setup.sampler, [example.key for example in chunk], seed=setup.config.lambdas.seed, epoch=epoch)
    if conditioner is not None:
        chunk = conditioner(chunk, lambdas)
    return setup.collator(chunk), torch.as_tensor(lambdas, dtype=torch.float32)


def benchmarks_for_policy(config: TrainConfig, benchmarks: BenchmarkConfig | None = None) -> BenchmarkConfig:
    """``benchmarks`` (default the run's own) as this run's policy is prompted: a λ-conditioned
    one reads the preamble of the run's evaluation λ as the system instruction (unless one is set)."""
    benchmarks = benchmarks or config.benchmarks
    if config.conditioning == "none" or benchmarks.system_instruction is not None:
        return benchmarks
    eval_lambda = config.eval.mixed_lambda(len(config.data.dimensions))
    return dataclasses.replace(benchmarks, system_instruction=lambda_preamble(eval_lambda, config.data.dimensions, config.preamble))


def make_conditioner(config: TrainConfig, examples, tokenizer) -> PromptConditioner | None:
    if config.conditioning == "none":
        return None
    return PromptConditioner(examples, tokenizer, config.data.dimensions, config.data.max_prompt_length, config.preamble)


def sft_warm_start(base, setup: RunSetup):
    """NLL on each prompt's best response under its λ's mixed target (through a LoRA adapter
    merged back into the base when LoRA is on, so the reference is the warm-started model).

    A λ-conditioned run learns each response after both the conditioned and the plain prompt:
    the policy reads the first and its reference the second, so the warm start must know both,
    or the policy's log-ratio starts from whatever the unseen form happens to give.
    """
    config, conditioner = setup.config, setup.conditioners["train"]
    model = add_lora(base, config.model.lora) if config.model.lora.enabled else base
    model.train()
    optimizer, lr_schedule = make_optimizer(model, config.optim, learning_rate=config.sft.learning_rate, total_steps=config.sft.steps)
    prompt_forms = [None] if conditioner is None else [conditioner, None]
    for step in track(setup.reporter, range(config.sft.steps), total=config.sft.steps, description="SFT warm start"):
        indices, epoch = batch_order(len(setup.encoded["train"]), config.sft.batch_size, config.seed + 1, step)
        for form in prompt_forms:
            batch, lambdas = training_batch(setup, indices, epoch, form)
            loss = best_response_nll(model, batch, lambdas, setup.device, setup.autocast) / len(prompt_forms)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.max_grad_norm)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return model.merge_and_unload() if is_lora(model) else model


def best_response_nll(model, batch, lambdas, device, autocast) -> Tensor:
    """Mean token NLL of each prompt's best response under its λ's mixed target."""
    preference, eligible = mixed_target(batch["targets"], lambdas, response_mask=batch["response_mask"], target_mask=batch["target_mask"])
    best = preference.masked_fill(~eligible, -1.0).argmax(-1)
    rows = torch.arange(len(lambdas)) * batch["response_mask"].shape[1] + best
    with autocast:
        logits = model(input_ids=batch["input_ids"][rows].to(device), attention_mask=batch["attention_mask"][rows].to(device), use_cache=False).logits
    sums, counts = sequence_logps(logits, batch["labels"][rows].to(device))
    return -sums.sum() / counts.sum().clamp(min=1)


def check_fresh_start(run_dir: Path, resume_from: Path | None) -> None:
    """A run that does not resume must not start over another run's checkpoints."""
    if resume_from is None and checkpoint_dirs(run_dir):
        raise FileExistsError(f"{run_dir} already holds checkpoints; resume it (--resume) or choose another output_dir")


def use_threads(config: TrainConfig) -> None:
    """Apply the config's ``threads`` (torch's intra-op threads) to this process."""
    if config.threads:
        torch.set_num_threads(config.threads)


def load_policy(config: TrainConfig, base, checkpoint: Path | None):
    """The trainable policy on top of ``base``: a LoRA adapter (fresh or from ``checkpoint``) or
    the full model (from ``checkpoint`` when resuming)."""
    if config.model.lora.enabled:
        if checkpoint is None:
            return add_lora(base, config.model.lora)
        from peft import PeftModel

        with peft_quietly():
            return PeftModel.from_pretrained(base, checkpoint, is_trainable=True)
    if checkpoint is None:
        return base
    load_full_weights(base, Path(checkpoint))
    return base


def load_full_weights(model, directory: Path) -> None:
    """Load a full fine-tune's safetensors (one file or shards) into ``model`` in place."""
    from safetensors.torch import load_file

    files = sorted(directory.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory}: no model*.safetensors weights")
    expected = set(model.state_dict())
    loaded: set[str] = set()
    for file in files:
        weights = load_file(file)
        unexpected = set(weights) - expected
        if unexpected:
            raise ValueError(f"{file}: weights the model does not have: {sorted(unexpected)[:5]}")
        model.load_state_dict(weights, strict=False)
        loaded |= set(weights)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    missing = expected - loaded - tied
    if missing:
        raise ValueError(f"{directory}: weights missing from the checkpoint: {sorted(missing)[:5]}")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    return torch.bfloat16 if device.type == "cuda" else None


def autocast_context(device: torch.device):
    """bf16 autocast on a GPU; nothing on CPU (weights keep their dtype either way)."""
    dtype = autocast_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def fill_reference_cache(setup: RunSetup, split: str, base, *, name: str | None = None) -> ReferenceCache:
    """Reference log-probs of ``setup.encoded[split]`` under ``base``, saved as ``name`` (default the
    split's) and read back when already computed; progress is shown while they are computed."""
    config, encoded = setup.config, setup.encoded[split]
    lengths = (config.data.max_prompt_length, config.data.max_length)
    # The reference is the base model unless an SFT warm start trained it; then all the warm start read
    # shapes it (its seed, its λ, which pick each best response, and the prompt forms), and runs share
    # it only when those agree too.
    warm_start = (config.seed, config.lambdas, config.conditioning, config.preamble) if config.sft.steps else None
    key = fingerprint(config.model, config.sft, warm_start, lengths, [(e.prompt_ids, e.response_ids) for e in encoded])
    encoded = longest_first(encoded)  # the cache is keyed by example: the order only changes the padding
    path = Path(config.reference_cache) / f"{name or split}-{key}.pt" if config.reference_cache else setup.run_dir / "reference_logps" / f"{name or split}.pt"
    cache = ReferenceCache(path, key)
    size = config.eval.batch_size
    starts = range(0, len(encoded), size)
    if not cache.load():
        starts = track(setup.reporter, starts, total=len(starts), description=f"reference log-probs ({split}: {len(encoded)} prompts, batches of {size})")
    batches = (setup.collator(encoded[i : i + size]) for i in starts)
    with setup.autocast:
        cache.fill(base, batches, len(encoded), max(len(e.response_ids) for e in encoded), setup.device)
    return cache


def held_out_metrics(model, setup: RunSetup, cache: ReferenceCache, weights: np.ndarray) -> dict[str, float]:
    """Every ranking metric of ``model`` on the held-out split at the evaluation λ ``weights``."""
    return evaluate_policy(
        model, setup.encoded["eval"], setup.collator, cache, loss=setup.config.loss, eval_lambda=weights, dimensions=setup.dimensions,
        batch_size=setup.config.eval.batch_size, device=setup.device, autocast_dtype=autocast_dtype(setup.device), conditioner=setup.conditioners["eval"],
    )


# ----------------------------------------------------------------------------- the loop


def train(
    config: TrainConfig,
    *,
    reporter: Reporter | None = None,
    resume_from: Path | None = None,
    on_step=None,
    device: torch.device | None = None,
) -> TrainResult:
    """Fine-tune as ``config`` says; resume from ``resume_from`` (a checkpoint directory) if given.

    ``on_step(step)`` is called after every optimizer step (tests use it to interrupt a run).
    ``device`` overrides ``model.device`` (Ray Train gives each worker its own GPU).

    Under a ``torch.distributed`` process group (Ray Train workers) every worker runs this same
    function: rank 0 prepares the run directory first, each worker takes its share of every
    global micro-batch, and only rank 0 writes checkpoints.
    """
    run_dir = Path(config.output_dir)
    rank, world = rank_and_world()
    if config.optim.batch_size % world:
        raise ValueError(f"optim.batch_size {config.optim.batch_size} is not divisible by the {world} data-parallel workers")
    check_fresh_start(run_dir, resume_from)
    benchmark_tasks = task_manager(config.benchmarks) if config.benchmarks.enabled else None
    if benchmark_tasks is not None:  # a misspelt task should fail now, not after the training
        check_tasks(config.benchmarks, benchmark_tasks)
    use_threads(config)
    device = device or resolve_device(config.model.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # NCCL collectives and barriers run on the current device

    with rank_zero_first():
        # Data loaded, split and tokenised once; then the reference (the base after the optional
        # warm start) and its log-probs, computed once per split.
        train_examples, eval_examples = load_datasets(config)
        config = dataclasses.replace(config, optim=config.optim.steps_for(len(train_examples)))
        if rank == 0:
            save_config(config, run_dir)
        setup = prepare_run(config, run_dir, device, reporter or _NullReporter(), {"train": train_examples, "eval": eval_examples})
        base = build_reference_weights(setup)
        check_layout_support(base, config.data.packing)
        caches = {split: fill_reference_cache(setup, split, base) for split in ("train", "eval")}

    # Policy, optimizer and, when resuming, everything needed to continue exactly.
    seed_everything(config.seed + 2)
    model = load_policy(config, base, resume_from)
    del base
    if config.model.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    trainable = data_parallel(ResponseScorer(model), device)  # the unwrapped `model` evaluates and is saved
    optimizer, lr_schedule = make_optimizer(model, config.optim)
    start_step = restore_training_state(resume_from, optimizer, lr_schedule) if resume_from is not None else 0

    optim, log = config.optim, TrainingLog()
    eval_lambda = setup.eval_lambda()
    for step in range(start_step + 1, optim.max_steps + 1):
        started = time.perf_counter()
        step_loss, tokens, problems = accumulate_gradients(setup, trainable, caches["train"], step)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), optim.max_grad_norm))
        finite = math.isfinite(step_loss) and math.isfinite(grad_norm)
        if finite:
            optimizer.step()
        else:
            message = nonfinite_message(step, step_loss, grad_norm, problems, log.last_finite)
            if optim.on_nonfinite == "raise":
                raise NonFiniteError(message)
            logger.warning(message + "; the step's update is skipped (optim.on_nonfinite: skip)")
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        log.add(step, step_loss, grad_norm, tokens, time.perf_counter() - started, finite)

        metrics = {}
        if step % config.log_every == 0 or step == optim.max_steps:
            metrics = log.flush(grad_norm, lr_schedule.get_last_lr()[0], device)
        if config.eval.every and step % config.eval.every == 0 and step != optim.max_steps:
            metrics |= {name if name.startswith("eval/") else f"eval/{name}": value for name, value in held_out_metrics(model, setup, caches["eval"], eval_lambda).items()}
        checkpoint = None
        saving = config.save_every and step % config.save_every == 0 or step == optim.max_steps
        if saving and rank == 0:
            checkpoint = save_checkpoint(run_dir, step, model, optimizer, lr_schedule, config)
        if step == optim.max_steps:
            final = final_evaluation(setup, model, caches["eval"], benchmark_tasks)
            if rank == 0:
                (run_dir / "eval.json").write_text(json.dumps({"step": step, "checkpoint": str(checkpoint), "metrics": final}, indent=2))
            metrics |= final
        if metrics or saving:  # on the same steps on every worker: a Ray report is collective
            setup.reporter.report(metrics, step=step, checkpoint=checkpoint)
        if on_step is not None:
            on_step(step)
    if start_step >= optim.max_steps:  # resumed from the final checkpoint: nothing left to train
        final = json.loads((run_dir / "eval.json").read_text())["metrics"]
    return TrainResult(run_dir=run_dir, checkpoint=latest_checkpoint(run_dir), metrics=final)


def restore_training_state(checkpoint: Path, optimizer, lr_schedule) -> int:
    """Optimizer, learning-rate schedule and RNG state of ``checkpoint``; returns its step."""
    state = load_training_state(checkpoint)
    optimizer.load_state_dict(state["optimizer"])
    lr_schedule.load_state_dict(state["scheduler" if "scheduler" in state else "lr_schedule"])  # "scheduler": checkpoints before the rename
    set_rng_state(state["rng"])
    return state["step"]


def accumulate_gradients(setup: RunSetup, trainable, reference_cache: ReferenceCache, step: int) -> tuple[float, int, list[str]]:
    """Forward and backward every micro-batch of optimizer step ``step`` (this worker's share).

    Returns the loss over the global batch, the response tokens this worker scored and what was
    non-finite (see :func:`nonfinite_terms`).
    """
    config, optim = setup.config, setup.config.optim
    rank, world = rank_and_world()
    step_loss, tokens, problems = 0.0, 0, []
    for micro in range(optim.gradient_accumulation):
        indices, epoch = batch_order(len(setup.encoded["train"]), optim.batch_size, config.seed, (step - 1) * optim.gradient_accumulation + micro)
        batch, lambdas = training_batch(setup, indices[rank::world], epoch, setup.conditioners["train"])
        if config.loss.name in PAIRWISE_LOSSES:  # forward only the two responses the loss uses
            batch = pairwise_batch(batch, lambdas)
        batch, lambdas = to_device(batch, setup.device), lambdas.to(setup.device)
        slots = batch["response_mask"].shape[1]
        reference = reference_cache.lookup(batch["example_keys"], slots, config.loss.logp_reduction, slots=batch.get("slots")).to(setup.device)
        with gradient_sync(trainable, micro == optim.gradient_accumulation - 1):
            with setup.autocast:
                logps = response_logps(trainable, batch)
            objective = compute_objective(config.loss, logps, reference, batch, lambdas, setup.dimensions)
            loss, shard_weight = global_batch_mean(objective)
            (objective.loss * shard_weight / optim.gradient_accumulation).backward()
        step_loss += loss / optim.gradient_accumulation
        tokens += int(logps.tokens.sum())
        problems += nonfinite_terms(logps, batch["response_mask"], objective)
    return step_loss, tokens, problems


def final_evaluation(setup: RunSetup, model, eval_cache: ReferenceCache, benchmark_tasks) -> dict[str, float]:
    """The held-out metrics of the trained policy, with its generations (``eval.generate``) and lm-eval
    benchmarks when configured; rank 0 generates and runs lm-eval while the others wait for its numbers."""
    config, eval_lambda = setup.config, setup.eval_lambda()
    final = held_out_metrics(model, setup, eval_cache, eval_lambda)
    if config.eval.generate:
        final |= on_rank_zero(lambda: final_generation_metrics(setup, model, eval_lambda))
    if benchmark_tasks is not None:
        benchmarks = benchmarks_for_policy(config)
        final |= on_rank_zero(lambda: run_benchmarks(model, setup.tokenizer, benchmarks, manager=benchmark_tasks)["metrics"])
    return final


@dataclass
class TrainingLog:
    """The training metrics between two log lines, and what the non-finite check compares with."""

    loss: float = 0.0
    tokens: int = 0
    seconds: float = 0.0
    steps: int = 0
    skipped_steps: int = 0
    last_finite: tuple[int, float, float] | None = None  # (step, loss, gradient norm) of the newest finite step

    def add(self, step: int, loss: float, grad_norm: float, tokens: int, seconds: float, finite: bool) -> None:
        self.tokens += tokens
        self.seconds += seconds
        if finite:
            self.loss += loss
            self.steps += 1
            self.last_finite = (step, loss, grad_norm)
        else:
            self.skipped_steps += 1

    def flush(self, grad_norm: float, learning_rate: float, device: torch.device) -> dict[str, float]:
        """The ``train/*`` metrics since the last flush (tokens summed over the data-parallel workers)."""
        metrics = {
            "train/loss": self.loss / self.steps if self.steps else float("nan"),
            "train/grad_norm": grad_norm,
            "train/learning_rate": learning_rate,
            "train/tokens_per_second": float(global_sum(torch.tensor(float(self.tokens)))) / max(self.seconds, 1e-9),
            "train/peak_memory_mb": peak_memory_mb(device),
            "train/skipped_steps": float(self.skipped_steps),
        }
        self.loss, self.tokens, self.seconds, self.steps = 0.0, 0, 0.0, 0
        return metrics


def nonfinite_terms(logps, response_mask: Tensor, objective) -> list[str]:
    """What is non-finite in one micro-batch: the policy's log-probs, or a term of the loss."""
    found = []
    bad = int((~torch.isfinite(logps.sum) & response_mask).sum())
    if bad:
        found.append(f"the policy's log-probs are non-finite for {bad} of {int(response_mask.sum())} responses")
    if not torch.isfinite(objective.loss.detach()).all():
        terms = [name for name, value in objective.metrics.items() if name.startswith("loss/") and not math.isfinite(value)]
        found.append("the loss is non-finite" + (f" (in {', '.join(terms)})" if terms else ""))
    return found


def nonfinite_message(step: int, loss: float, grad_norm: float, problems: list[str], last_finite: tuple[int, float, float] | None) -> str:
    """The error of a non-finite step: which term, and the newest finite values to compare with."""
    what = "; ".join(dict.fromkeys(problems)) or "the gradient norm is non-finite"
    last = f"last finite: step {last_finite[0]}, loss {last_finite[1]:.6g}, gradient norm {last_finite[2]:.6g}" if last_finite else "no step before it was finite"
    return f"step {step}: loss {loss}, gradient norm {grad_norm}: {what}; {last}"


def prompt_renderer(config: TrainConfig, tokenizer, weights: Sequence[float] | None):
    """The prompt text the policy reads at evaluation: plain, or with the λ preamble when the run
    is λ-conditioned (``weights`` None: a plain prompt, as the reference reads it)."""
    if config.conditioning == "none" or weights is None:
        return lambda example: render_prompt(example.prompt, tokenizer)
    return lambda example: conditioned_prompt(example.prompt, weights, config.data.dimensions, tokenizer, config.preamble)


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


def global_batch_mean(objective) -> tuple[float, float]:
    """The loss over the global batch, and the factor on this worker's loss that makes DDP's
    gradient average equal to that mean's gradient (1 with one worker).

    Each shard's loss is a mean over its own ``count``; the global mean weights shards by count.
    """
    _, world = rank_and_world()
    if world == 1:
        return objective.loss.item(), 1.0
    count = objective.count.float()
    loss_sum, total = global_sum(torch.stack([objective.loss.detach().float() * count, count])).tolist()
    total = max(total, 1.0)
    return loss_sum / total, world * count.item() / total


class _NullReporter:
    def report(self, metrics, *, step, checkpoint=None):
        pass

    def close(self):
        pass


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


def load_run_base(config: TrainConfig, run_dir: Path):
    """The run's reference weights: ``run_dir/reference`` when saved, else ``model.name_or_path``."""
    saved = run_dir / "reference"
    return load_base_model(config.model, weights=saved if (saved / "config.json").exists() else None)


def checkpoint_setup(checkpoint: Path, *, data: str | None = None) -> tuple[RunSetup, str]:
    """The set-up of a saved checkpoint's run with one split, "eval": the run's held-out split, or
    ``data`` (any source); and the name its reference log-probs are cached under."""
    checkpoint, config, run_dir = open_checkpoint(checkpoint)
    if data is None:
        examples, cache_name = load_datasets(config)[1], "eval"
    else:
        options = dict(dimensions=config.data.dimensions, format="auto", on_bad_record=config.data.on_bad_record, rating_scale=config.data.rating_scale)
        examples, cache_name = rekey(load_examples(data, **options)[0]), "eval-" + fingerprint(data)
    return prepare_run(config, run_dir, resolve_device(config.model.device), _NullReporter(), {"eval": examples}), cache_name


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
