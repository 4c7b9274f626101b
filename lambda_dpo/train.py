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

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lambda_dpo import checkpoints, run_setup, timings
from lambda_dpo.benchmarks import check_tasks, task_manager
from lambda_dpo.checkpoint_eval import final_evaluation, held_out_metrics
from lambda_dpo.checkpoints import checkpoint_dirs, latest_checkpoint, load_training_state, rng_state, set_rng_state
from lambda_dpo.config import save_config
from lambda_dpo.console import logger
from lambda_dpo.distributed import data_parallel, global_sum, gradient_sync, rank_and_world, rank_zero_first
from lambda_dpo.metrics import peak_memory_mb
from lambda_dpo.modeling import (
    ReferenceCache,
    ResponseScorer,
    check_layout_support,
    enable_gradient_checkpointing,
    resolve_device,
    response_logps,
    to_device,
)
from lambda_dpo.objective import PAIRWISE_LOSSES, compute_objective, pairwise_batch
from lambda_dpo.policy import load_policy, make_optimizer
from lambda_dpo.reference import build_reference_weights, fill_reference_cache
from lambda_dpo.reporting import Reporter
from lambda_dpo.run_setup import NullReporter, RunSetup, batch_order, load_datasets, prepare_run, seed_everything, use_threads
from lambda_dpo.train_config import TrainConfig


class NonFiniteError(ValueError):
    """Training met a non-finite loss or gradient norm (``optim.on_nonfinite: raise``)."""


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    metrics: dict[str, float]  # final held-out evaluation


def check_fresh_start(run_dir: Path, resume_from: Path | None) -> None:
    """A run that does not resume must not start over another run's checkpoints."""
    if resume_from is None and checkpoint_dirs(run_dir):
        raise FileExistsError(f"{run_dir} already holds checkpoints; resume it (--resume) or choose another output_dir")


def save_checkpoint(run_dir: Path, step: int, model, optimizer, lr_schedule, config: TrainConfig) -> Path:
    """``checkpoints/step-N``: weights, optimizer, learning-rate schedule and RNG state, and config (lambda_dpo.checkpoints)."""
    state = {"optimizer": optimizer.state_dict(), "lr_schedule": lr_schedule.state_dict(), "rng": rng_state()}
    return checkpoints.save_checkpoint(run_dir, step, model, state, lambda directory: save_config(config, directory), keep=config.keep_checkpoints)


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
    timed = (lambda event, **figures: timings.mark(run_dir, event, **figures)) if rank == 0 else (lambda event, **figures: None)
    timed(timings.TRAIN_STARTED)
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
        setup = prepare_run(config, run_dir, device, reporter or NullReporter(), {"train": train_examples, "eval": eval_examples})
        timed(timings.DATA_READY)
        base = build_reference_weights(setup)
        timed(timings.WARM_START_DONE)
        check_layout_support(base, config.data.packing)
        caches = {split: fill_reference_cache(setup, split, base) for split in ("train", "eval")}
        timed(timings.REFERENCE_READY)

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

    optim, log, saving_seconds = config.optim, TrainingLog(), 0.0
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
        reporting = time.perf_counter()
        if saving and rank == 0:
            checkpoint = save_checkpoint(run_dir, step, model, optimizer, lr_schedule, config)
        if step == optim.max_steps:
            timed(timings.TRAINING_DONE, saving_seconds=saving_seconds + time.perf_counter() - reporting)
            final = final_evaluation(setup, model, caches["eval"], benchmark_tasks)
            if rank == 0:
                (run_dir / "eval.json").write_text(json.dumps({"step": step, "checkpoint": str(checkpoint), "metrics": final}, indent=2))
            metrics |= final
            timed(timings.EVALUATION_DONE)
        if metrics or saving:  # on the same steps on every worker: a Ray report is collective
            setup.reporter.report(metrics, step=step, checkpoint=checkpoint)
        saving_seconds += time.perf_counter() - reporting  # checkpoints written and reported (Ray uploads them)
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
        batch, lambdas = run_setup.training_batch(setup, indices[rank::world], epoch, setup.conditioners["train"])
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
