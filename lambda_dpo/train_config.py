"""The config of one fine-tune: typed dataclasses read from YAML with dotted overrides (lambda_dpo.config)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from lambda_dpo.benchmarks import BenchmarkConfig
from lambda_dpo.conditioning import CONDITIONING, DEFAULT_PREAMBLE, PREAMBLES
from lambda_dpo.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Interval, check_settings, load_config, setting
from lambda_dpo.data.loading import DataConfig
from lambda_dpo.evaluate import EvalConfig
from lambda_dpo.lambdas import LambdaConfig, build_sampler
from lambda_dpo.modeling import (
    ModelConfig,
)
from lambda_dpo.objective import LossConfig
from lambda_dpo.precision import check_trainable

ON_NONFINITE = ("raise", "skip")


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
        check_trainable(self.model.dtype)
        # λ given by the user are checked against the data's dimensions before anything runs.
        build_sampler(self.lambdas, self.data.dimensions)
        self.eval.mixed_lambda(len(self.data.dimensions))
        if self.eval.generate:
            from lambda_dpo.verifiable.scoring import check_dimensions

            check_dimensions(self.data.dimensions)


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A fine-tune's config from YAML and ``key=value`` overrides (``benchmarks_config`` read in)."""
    return load_config(TrainConfig, path, overrides, base_files={"benchmarks": "benchmarks_config"})
