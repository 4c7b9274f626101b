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
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from lambda_dpo.benchmarks import BenchmarkConfig, check_tasks, run_benchmarks, task_manager
from lambda_dpo.conditioning import CONDITIONING, PromptConditioner, conditioned_prompt, lambda_preamble, preamble_corpus, steerability
from lambda_dpo.config import load_config, save_config
from lambda_dpo.data.collate import ListwiseCollator
from lambda_dpo.console import logger
from lambda_dpo.data.encoding import EncodedExample, encode_with_report, render_prompt
from lambda_dpo.data.loading import DataConfig, load_examples
from lambda_dpo.data.records import ListwiseExample
from lambda_dpo.distributed import data_parallel, global_sum, gradient_sync, on_rank_zero, rank_and_world, rank_zero_first
from lambda_dpo.evaluate import EvalConfig, evaluate_policy
from lambda_dpo.lambdas import LambdaConfig, build_sampler, lambdas_for_examples, validate_lambda
from lambda_dpo.loss import mixed_target
from lambda_dpo.metrics import peak_memory_mb
from lambda_dpo.modeling import (
    ModelConfig,
    ReferenceCache,
    add_lora,
    enable_gradient_checkpointing,
    fingerprint,
    is_lora,
    load_base_model,
    check_vocabulary,
    load_tokenizer,
    resolve_device,
    response_logps,
    sequence_logps,
    to_device,
)
from lambda_dpo.objective import PAIRWISE_LOSSES, LossConfig, compute_objective, pairwise_batch
from lambda_dpo.reporting import Reporter, track

TRAINING_STATE = "training_state.pt"
GENERATIONS = "generations.jsonl"  # per-prompt greedy responses and scores of the final evaluation (eval.generate)
ON_NONFINITE = ("raise", "skip")


class NonFiniteError(ValueError):
    """Training met a non-finite loss or gradient norm (``optim.on_nonfinite: raise``)."""


@dataclass
class OptimConfig:
    """AdamW with a cosine schedule and linear warm-up, over optimizer steps."""

    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    max_steps: int = 1000  # optimizer steps (ignored when `epochs` is set)
    epochs: Optional[float] = None  # passes over the training set; sets max_steps once the data is loaded
    batch_size: int = 4  # prompts per micro-batch (each brings its N responses)
    gradient_accumulation: int = 1
    max_grad_norm: float = 1.0
    on_nonfinite: str = "raise"  # raise: stop at a non-finite loss or gradient norm | skip: drop that step's update and count it

    def __post_init__(self) -> None:
        if self.max_steps <= 0 or self.batch_size <= 0 or self.gradient_accumulation <= 0:
            raise ValueError("optim.max_steps, optim.batch_size and optim.gradient_accumulation must be positive")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"optim.epochs must be positive, got {self.epochs}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"optim.on_nonfinite must be one of {', '.join(ON_NONFINITE)}; got {self.on_nonfinite!r}")

    def steps_for(self, num_examples: int) -> "OptimConfig":
        """This config with ``max_steps`` set from ``epochs`` over ``num_examples`` prompts."""
        if self.epochs is None:
            return self
        per_step = self.batch_size * self.gradient_accumulation
        return dataclasses.replace(self, max_steps=max(1, math.ceil(self.epochs * num_examples / per_step)))


@dataclass
class SFTConfig:
    """Optional warm start for base models: NLL on each prompt's best response under its λ."""

    steps: int = 0  # 0 = no warm start
    learning_rate: float = 1e-3
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size <= 0:
            raise ValueError("sft.steps must be ≥ 0 and sft.batch_size positive")


@dataclass
class TrainConfig:
    """One λ-DPO fine-tune."""

    output_dir: str = "runs/train"
    seed: int = 0
    threads: Optional[int] = None  # torch intra-op threads (1 is fastest for the tiny model on 2 cores)
    conditioning: str = "none"  # none | prompt: λ rendered into the prompt, so λ steers the policy at inference
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    lambdas: LambdaConfig = field(default_factory=LambdaConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    benchmarks_config: Optional[str] = None  # YAML of `benchmarks` (e.g. configs/eval/paper.yaml); `benchmarks.*` keys override it
    benchmarks: BenchmarkConfig = field(default_factory=BenchmarkConfig)  # lm-eval tasks run on the final policy
    log_every: int = 10
    save_every: int = 0  # checkpoint every this many steps (0 = only at the end)
    keep_checkpoints: int = 2  # the newest this many step checkpoints are kept

    def __post_init__(self) -> None:
        if self.log_every <= 0 or self.save_every < 0 or self.keep_checkpoints < 1:
            raise ValueError("log_every must be positive, save_every ≥ 0 and keep_checkpoints ≥ 1")
        if self.conditioning not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONING)}; got {self.conditioning!r}")
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
    data = config.data
    options = dict(dimensions=data.dimensions, format=data.format, on_bad_record=data.on_bad_record)
    examples, _ = load_examples(data.source, split=data.split, limit=data.limit, **options)
    if config.eval.source is None:
        train_examples, eval_examples = split_examples(examples, config.eval)
    else:
        train_examples = examples
        eval_examples, _ = load_examples(config.eval.source, split=config.eval.split, limit=config.eval.limit, **options)
    if config.eval.limit is not None:
        eval_examples = eval_examples[: config.eval.limit]
    return rekey(train_examples), rekey(eval_examples)


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
        yield from preamble_corpus(config.data.dimensions, config.seed)


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


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_optimizer(model, optim: OptimConfig, *, learning_rate: float | None = None, total_steps: int | None = None):
    from transformers import get_cosine_schedule_with_warmup

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate or optim.learning_rate, weight_decay=optim.weight_decay)
    total = total_steps or optim.max_steps
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(optim.warmup_ratio * total), total)
    return optimizer, scheduler


def checkpoint_step(name: str) -> int:
    """N of a ``step-N`` checkpoint directory name, -1 for any other name (``step-N.partial``)."""
    prefix, _, number = name.rpartition("-")
    return int(number) if prefix == "step" and number.isdigit() else -1


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first; a ``step-N.partial`` left by a kill mid-save is not one."""
    found = [p for p in (run_dir / "checkpoints").glob("step-*") if checkpoint_step(p.name) >= 0 and (p / TRAINING_STATE).exists()]
    return sorted(found, key=lambda p: checkpoint_step(p.name))


def save_checkpoint(run_dir: Path, step: int, model, optimizer, scheduler, config: TrainConfig) -> Path:
    """Weights (safetensors), optimizer/scheduler/RNG state and config; written then renamed."""
    final = run_dir / "checkpoints" / f"step-{step}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}
    torch.save(state, partial / TRAINING_STATE)
    save_config(config, partial)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in checkpoint_dirs(run_dir)[: -config.keep_checkpoints]:
        shutil.rmtree(old)
    return final


# ----------------------------------------------------------------------------- model


def build_reference_weights(config: TrainConfig, run_dir: Path, tokenizer, train_set, collator, sampler, device, autocast, conditioner, reporter=None):
    """The base model the preference stage starts from, saved under ``run_dir/reference`` when
    it differs from ``model.name_or_path`` (random init, SFT warm start). Reused on resume."""
    saved = run_dir / "reference"
    if (saved / "config.json").exists():
        return load_base_model(config.model, weights=saved)
    seed_everything(config.seed)
    base = load_base_model(config.model, vocab_size=len(tokenizer))
    if config.sft.steps:
        base = sft_warm_start(base, config, train_set, collator, sampler, device, autocast, conditioner, reporter)
    if config.model.uses_random_init() or config.sft.steps:
        base.save_pretrained(saved, safe_serialization=True)
    return base


def training_batch(train_set, indices, epoch, sampler, config: TrainConfig, collator, conditioner):
    """The collated batch of ``indices`` and its examples' λ ``[B, m]`` (rendered into the
    prompts when the policy is λ-conditioned)."""
    chunk = [train_set[i] for i in indices]
    lambdas = lambdas_for_examples(sampler, [example.key for example in chunk], seed=config.lambdas.seed, epoch=epoch)
    if conditioner is not None:
        chunk = conditioner(chunk, lambdas)
    return collator(chunk), torch.as_tensor(lambdas, dtype=torch.float32)


def benchmarks_for_policy(config: TrainConfig, benchmarks: BenchmarkConfig | None = None) -> BenchmarkConfig:
    """``benchmarks`` (default the run's own) as this run's policy is prompted: a λ-conditioned
    one reads the preamble of the run's evaluation λ as the system instruction (unless one is set)."""
    benchmarks = benchmarks or config.benchmarks
    if config.conditioning == "none" or benchmarks.system_instruction is not None:
        return benchmarks
    eval_lambda = config.eval.mixed_lambda(len(config.data.dimensions))
    return dataclasses.replace(benchmarks, system_instruction=lambda_preamble(eval_lambda, config.data.dimensions))


def make_conditioner(config: TrainConfig, examples, tokenizer) -> PromptConditioner | None:
    if config.conditioning == "none":
        return None
    return PromptConditioner(examples, tokenizer, config.data.dimensions, config.data.max_prompt_length)


def sft_warm_start(base, config: TrainConfig, train_set, collator, sampler, device, autocast, conditioner, reporter=None):
    """NLL on each prompt's best response under its λ's mixed target (through a LoRA adapter
    merged back into the base when LoRA is on, so the reference is the warm-started model).

    A λ-conditioned run learns each response after both the conditioned and the plain prompt:
    the policy reads the first and its reference the second, so the warm start must know both,
    or the policy's log-ratio starts from whatever the unseen form happens to give.
    """
    model = add_lora(base, config.model.lora) if config.model.lora.enabled else base
    model.train()
    optimizer, scheduler = make_optimizer(model, config.optim, learning_rate=config.sft.learning_rate, total_steps=config.sft.steps)
    prompt_forms = [None] if conditioner is None else [conditioner, None]
    for step in track(reporter, range(config.sft.steps), total=config.sft.steps, description="SFT warm start"):
        indices, epoch = batch_order(len(train_set), config.sft.batch_size, config.seed + 1, step)
        for form in prompt_forms:
            batch, lambdas = training_batch(train_set, indices, epoch, sampler, config, collator, form)
            loss = best_response_nll(model, batch, lambdas, device, autocast) / len(prompt_forms)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
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


def load_policy(config: TrainConfig, base, checkpoint: Path | None):
    """The trainable policy on top of ``base``: a LoRA adapter (fresh or from ``checkpoint``) or
    the full model (from ``checkpoint`` when resuming)."""
    if config.model.lora.enabled:
        if checkpoint is None:
            return add_lora(base, config.model.lora)
        from peft import PeftModel

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


def fill_reference_cache(
    config: TrainConfig, run_dir: Path, name: str, encoded: list[EncodedExample], base, collator, device, autocast, reporter: Reporter | None = None
) -> ReferenceCache:
    """Reference log-probs of ``encoded`` under ``base``, read from ``run_dir`` when already computed
    (progress shown through ``reporter`` while it computes)."""
    lengths = (config.data.max_prompt_length, config.data.max_length)
    key = fingerprint(config.model, config.sft, config.seed, lengths, [(e.prompt_ids, e.response_ids) for e in encoded])
    cache = ReferenceCache(run_dir / "reference_logps" / f"{name}.pt", key)
    size = config.eval.batch_size
    starts = range(0, len(encoded), size)
    if not cache.load():
        starts = track(reporter, starts, total=len(starts), description=f"reference log-probs ({name}, {len(encoded)} prompts)")
    batches = (collator(encoded[i : i + size]) for i in starts)
    with autocast:
        cache.fill(base, batches, len(encoded), max(len(e.response_ids) for e in encoded), device)
    return cache


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
    if resume_from is None and checkpoint_dirs(run_dir):
        raise FileExistsError(f"{run_dir} already holds checkpoints; resume it (--resume) or choose another output_dir")
    benchmark_tasks = task_manager(config.benchmarks) if config.benchmarks.enabled else None
    if benchmark_tasks is not None:  # a misspelt task should fail now, not after the training
        check_tasks(config.benchmarks, benchmark_tasks)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = device or resolve_device(config.model.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # NCCL collectives and barriers run on the current device
    # Weights stay in their dtype; on a GPU the matmuls run in bf16 under autocast.
    autocast = autocast_context(device)
    reporter = reporter or _NullReporter()

    with rank_zero_first():
        # Data: loaded, split, tokenised once; the tokenizer is saved with the run.
        train_examples, eval_examples = load_datasets(config)
        config = dataclasses.replace(config, optim=config.optim.steps_for(len(train_examples)))
        if rank == 0:
            save_config(config, run_dir)
        dimensions = list(config.data.dimensions)
        tokenizer = load_tokenizer(config.model, training_texts=tokenizer_corpus(config, train_examples), saved=run_dir / "tokenizer")
        check_vocabulary(config.model, tokenizer)
        train_set = encode(train_examples, tokenizer, config.data, name="training data")
        eval_set = encode(eval_examples, tokenizer, config.data, name="held-out data")
        collator = ListwiseCollator(tokenizer.pad_token_id, target_temperature=config.data.target_temperature)
        sampler = build_sampler(config.lambdas, dimensions)
        eval_lambda = config.eval.mixed_lambda(len(dimensions))

        # Reference: the base after the optional warm start; its log-probs computed once per split.
        conditioners = {"train": make_conditioner(config, train_examples, tokenizer), "eval": make_conditioner(config, eval_examples, tokenizer)}
        base = build_reference_weights(config, run_dir, tokenizer, train_set, collator, sampler, device, autocast, conditioners["train"], reporter)
        caches = {
            split: fill_reference_cache(config, run_dir, split, encoded, base, collator, device, autocast, reporter)
            for split, encoded in (("train", train_set), ("eval", eval_set))
        }

    # Policy, optimizer and, when resuming, everything needed to continue exactly.
    seed_everything(config.seed + 2)
    model = load_policy(config, base, resume_from)
    del base
    if config.model.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    trainable = data_parallel(model, device)  # the unwrapped `model` evaluates and is saved
    optimizer, scheduler = make_optimizer(model, config.optim)
    start_step = 0
    if resume_from is not None:
        state = torch.load(Path(resume_from) / TRAINING_STATE, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start_step = state["step"]

    def evaluate() -> dict[str, float]:
        return evaluate_policy(
            model, eval_set, collator, caches["eval"], loss=config.loss, eval_lambda=eval_lambda, dimensions=dimensions,
            batch_size=config.eval.batch_size, device=device, autocast_dtype=autocast_dtype(device), conditioner=conditioners["eval"],
        )

    optim = config.optim
    window = {"loss": 0.0, "tokens": 0, "time": 0.0, "steps": 0}
    last_finite: tuple[int, float, float] | None = None  # (step, loss, gradient norm) of the newest finite step
    skipped_steps = 0
    for step in range(start_step + 1, optim.max_steps + 1):
        started = time.perf_counter()
        step_loss, problems = 0.0, []
        for micro in range(optim.gradient_accumulation):
            indices, epoch = batch_order(len(train_set), optim.batch_size, config.seed, (step - 1) * optim.gradient_accumulation + micro)
            batch, lambdas = training_batch(train_set, indices[rank::world], epoch, sampler, config, collator, conditioners["train"])
            if config.loss.name in PAIRWISE_LOSSES:  # forward only the two responses the loss uses
                batch = pairwise_batch(batch, lambdas)
            batch, lambdas = to_device(batch, device), lambdas.to(device)
            reference = caches["train"].lookup(batch["example_keys"], batch["response_mask"].shape[1], config.loss.logp_reduction, slots=batch.get("slots")).to(device)
            with gradient_sync(trainable, micro == optim.gradient_accumulation - 1):
                with autocast:
                    logps = response_logps(trainable, batch)
                objective = compute_objective(config.loss, logps, reference, batch, lambdas, dimensions)
                loss, shard_weight = global_batch_mean(objective)
                (objective.loss * shard_weight / optim.gradient_accumulation).backward()
            step_loss += loss / optim.gradient_accumulation
            window["tokens"] += int(logps.tokens.sum())
            problems += nonfinite_terms(logps, batch["response_mask"], objective)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), optim.max_grad_norm)
        finite = math.isfinite(step_loss) and bool(torch.isfinite(grad_norm))
        if finite:
            optimizer.step()
            last_finite = (step, step_loss, float(grad_norm))
        elif optim.on_nonfinite == "raise":
            raise NonFiniteError(nonfinite_message(step, step_loss, float(grad_norm), problems, last_finite))
        else:
            skipped_steps += 1
            logger.warning(nonfinite_message(step, step_loss, float(grad_norm), problems, last_finite) + "; the step's update is skipped (optim.on_nonfinite: skip)")
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if finite:
            window["loss"] += step_loss
            window["steps"] += 1
        window["time"] += time.perf_counter() - started

        metrics = {}
        if step % config.log_every == 0 or step == optim.max_steps:
            metrics = {
                "train/loss": window["loss"] / window["steps"] if window["steps"] else float("nan"),
                "train/grad_norm": float(grad_norm),
                "train/learning_rate": scheduler.get_last_lr()[0],
                "train/tokens_per_second": float(global_sum(torch.tensor(float(window["tokens"])))) / max(window["time"], 1e-9),
                "train/peak_memory_mb": peak_memory_mb(device),
                "train/skipped_steps": float(skipped_steps),
            }
            window = {"loss": 0.0, "tokens": 0, "time": 0.0, "steps": 0}
        if config.eval.every and step % config.eval.every == 0 and step != optim.max_steps:
            metrics |= {name if name.startswith("eval/") else f"eval/{name}": value for name, value in evaluate().items()}
        checkpoint = None
        saving = config.save_every and step % config.save_every == 0 or step == optim.max_steps
        if saving and rank == 0:
            checkpoint = save_checkpoint(run_dir, step, model, optimizer, scheduler, config)
        if step == optim.max_steps:
            final = evaluate()
            if config.eval.generate:  # rank 0 generates; the others wait for its numbers
                final |= on_rank_zero(lambda: final_generation_metrics(config, model, tokenizer, eval_examples, eval_lambda, run_dir / GENERATIONS, reporter))
            if benchmark_tasks is not None:  # rank 0 runs lm-eval; the others wait for its numbers
                benchmarks = benchmarks_for_policy(config)
                final |= on_rank_zero(lambda: run_benchmarks(model, tokenizer, benchmarks, manager=benchmark_tasks)["metrics"])
            if rank == 0:
                (run_dir / "eval.json").write_text(json.dumps({"step": step, "checkpoint": str(checkpoint), "metrics": final}, indent=2))
            metrics |= final
        if metrics or saving:  # on the same steps on every worker: a Ray report is collective
            reporter.report(metrics, step=step, checkpoint=checkpoint)
        if on_step is not None:
            on_step(step)
    if start_step >= optim.max_steps:  # resumed from the final checkpoint: nothing left to train
        final = json.loads((run_dir / "eval.json").read_text())["metrics"]
    return TrainResult(run_dir=run_dir, checkpoint=latest_checkpoint(run_dir), metrics=final)


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
    return lambda example: conditioned_prompt(example.prompt, weights, config.data.dimensions, tokenizer)


def generation_scores(config: TrainConfig, model, tokenizer, examples, weights, *, plain: bool = False, reporter=None, max_new_tokens: int | None = None):
    """:class:`~lambda_dpo.verifiable.scoring.GenerationScores` of ``model``'s greedy responses to
    ``examples`` at the evaluation λ ``weights``.

    plain: the model reads plain prompts (the reference, which never saw a preamble)."""
    from lambda_dpo.verifiable.scoring import score_generations

    return score_generations(
        model, tokenizer, examples, weights=list(weights), dimensions=config.data.dimensions,
        render=prompt_renderer(config, tokenizer, None if plain else weights), max_new_tokens=max_new_tokens or config.eval.max_new_tokens,
        batch_size=config.eval.batch_size, track=lambda iterable, total, description: track(reporter, iterable, total=total, description=description),
    )


def final_generation_metrics(config: TrainConfig, model, tokenizer, examples, weights, out: Path, reporter=None) -> dict[str, float]:
    scores = generation_scores(config, model, tokenizer, examples, weights, reporter=reporter)
    write_rows(out, scores.rows)
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


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoint_dirs(Path(run_dir))
    return found[-1] if found else None


def load_checkpoint_config(checkpoint: Path) -> TrainConfig:
    if not (Path(checkpoint) / "config.yaml").exists():
        raise FileNotFoundError(f"{checkpoint} is not a checkpoint directory (no config.yaml)")
    return load_config(TrainConfig, Path(checkpoint) / "config.yaml")


def load_checkpoint_policy(checkpoint: str | Path, *, reference: bool = False):
    """``(config, tokenizer, model)`` of a saved checkpoint, in eval mode on the run's device;
    with ``reference`` the run's reference model (what the fine-tune started from) instead."""
    checkpoint = Path(checkpoint)
    config = load_checkpoint_config(checkpoint)
    run_dir = checkpoint.parent.parent
    tokenizer = load_tokenizer(config.model, saved=run_dir / "tokenizer")
    base = load_run_base(config, run_dir)
    model = base if reference else load_policy(config, base, checkpoint)
    return config, tokenizer, model.eval()


def load_run_base(config: TrainConfig, run_dir: Path):
    """The run's reference weights: ``run_dir/reference`` when saved, else ``model.name_or_path``."""
    saved = run_dir / "reference"
    return load_base_model(config.model, weights=saved if (saved / "config.json").exists() else None)


def checkpoint_evaluator(checkpoint: Path, *, data: str | None = None):
    """A function ``weights → metrics`` scoring a saved checkpoint at any evaluation λ.

    The data is the run's held-out split, or ``data`` (any source). The reference comes from the
    run (adapter disabled, or the saved reference weights) and its log-probs from the run's
    cache when they were computed for the same data. A λ-conditioned policy sees ``weights`` in
    its prompts; for any policy they define the mixed target.
    """
    checkpoint = Path(checkpoint)
    config = load_checkpoint_config(checkpoint)
    run_dir = checkpoint.parent.parent
    device = resolve_device(config.model.device)
    dimensions = list(config.data.dimensions)
    if data is None:
        _, examples = load_datasets(config)
        cache_name = "eval"
    else:
        options = dict(dimensions=dimensions, format="auto", on_bad_record=config.data.on_bad_record)
        examples = rekey(load_examples(data, **options)[0])
        cache_name = "eval-" + fingerprint(data)
    tokenizer = load_tokenizer(config.model, saved=run_dir / "tokenizer")
    encoded = encode(examples, tokenizer, config.data)
    collator = ListwiseCollator(tokenizer.pad_token_id, target_temperature=config.data.target_temperature)
    base = load_run_base(config, run_dir)
    cache = fill_reference_cache(config, run_dir, cache_name, encoded, base, collator, device, autocast_context(device))
    conditioner = make_conditioner(config, examples, tokenizer)
    model = load_policy(config, base, checkpoint)
    del base

    def evaluate(weights: Sequence[float] | None = None) -> dict[str, float]:
        eval_lambda = config.eval.mixed_lambda(len(dimensions)) if weights is None else validate_lambda(weights, len(dimensions), name="--lambda")
        return evaluate_policy(
            model, encoded, collator, cache, loss=config.loss, eval_lambda=eval_lambda, dimensions=dimensions,
            batch_size=config.eval.batch_size, device=device, autocast_dtype=autocast_dtype(device), conditioner=conditioner,
        )

    return evaluate


def checkpoint_generations(checkpoint: Path, *, data: str | None = None, weights: Sequence[float] | None = None, reference: bool = False,
                           max_new_tokens: int | None = None, reporter=None):
    """Generation scores of a saved checkpoint (or, with ``reference``, of the model it started from)
    on the run's held-out split or ``data``, at λ ``weights`` (default: the run's ``eval.weights``)."""
    config, tokenizer, model = load_checkpoint_policy(checkpoint, reference=reference)
    dimensions = list(config.data.dimensions)
    if data is None:
        examples = load_datasets(config)[1]
    else:
        examples = rekey(load_examples(data, dimensions=dimensions, format="auto", on_bad_record=config.data.on_bad_record)[0])
    eval_lambda = config.eval.mixed_lambda(len(dimensions)) if weights is None else validate_lambda(weights, len(dimensions), name="--lambda")
    return generation_scores(config, model, tokenizer, examples, eval_lambda, plain=reference, reporter=reporter, max_new_tokens=max_new_tokens)


def evaluate_checkpoint(checkpoint: Path, *, data: str | None = None, eval_lambda: Sequence[float] | None = None) -> dict[str, float]:
    """Held-out metrics of a saved checkpoint at ``eval_lambda`` (default: the run's ``eval.weights``)."""
    return checkpoint_evaluator(checkpoint, data=data)(eval_lambda)


@dataclass
class Steerability:
    """Per-dimension top-1 accuracy under each vertex λ, and the steerability scalar."""

    dimensions: list[str]
    accuracy: np.ndarray  # [m, m]: row = e_k given, column = top1_accuracy/<dimension>
    centroid: dict[str, float]  # every metric at the centroid λ
    score: float


def steerability_of(evaluate, dimensions: Sequence[str]) -> Steerability:
    """Evaluate at every vertex e_k and the centroid with ``evaluate(weights) → metrics``."""
    m = len(dimensions)
    rows = [evaluate(list(np.eye(m)[k])) for k in range(m)]
    accuracy = np.array([[row[f"top1_accuracy/{d}"] for d in dimensions] for row in rows])
    return Steerability(list(dimensions), accuracy, evaluate([1.0 / m] * m), steerability(accuracy))
