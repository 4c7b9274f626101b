"""Benchmark evaluation through lm-evaluation-harness, as the paper measures λ-DPO.

The policy is scored in memory, as trained (base + adapter, no merge-and-save round trip),
through ``lm_eval.simple_evaluate`` and its Hugging Face wrapper. Each configured task reports
its own metric under a stable name, ``lm_eval/<task>``, and ``lm_eval/mean`` is their unweighted
mean (the paper's "average accuracy"), which a sweep can take as its objective.

Tasks are any lm-eval task or group; ``configs/eval/paper.yaml`` names the paper's six. The
tasks shipped in ``lambda_dpo/tasks`` (the offline ``tiny_*`` multiple-choice tasks on the
synthetic data) are always on the search path.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import List, Optional

import torch

from lambda_dpo.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, check_settings, setting
from lambda_dpo.precision import resolve_autocast
from lambda_dpo.tasks import TASKS_DIR

PREFIX = "lm_eval/"
MEAN = PREFIX + "mean"


@dataclass
class BenchmarkTask:
    """One lm-eval task (or group) and the metric read from its results."""

    name: str = ""  # lm-eval task or group name, e.g. arc_challenge, mmlu
    metric: str = "acc"  # acc | acc_norm | exact_match | ... as the task defines it
    filter: str = "none"  # the task's filter the metric is read under (gsm8k: strict-match | flexible-extract)
    num_fewshot: Optional[int] = None  # None: the task's own default

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("every benchmarks.tasks entry needs a name (an lm-eval task or group)")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise ValueError(f"benchmarks task {self.name}: num_fewshot must be ≥ 0, got {self.num_fewshot}")

    @property
    def result_key(self) -> str:
        return f"{self.metric},{self.filter}"

    @property
    def metric_name(self) -> str:
        return PREFIX + self.name


@dataclass
class BenchmarkConfig:
    """lm-eval benchmarks run on the final policy; no tasks, no benchmark evaluation."""

    tasks: List[BenchmarkTask] = setting(default_factory=list, help='lm-eval tasks: {name, metric, filter, num_fewshot} each')
    include_paths: List[str] = setting(default_factory=list, path=True, help='directories of extra task YAMLs')
    limit: Optional[float] = setting(None, within=POSITIVE, help='documents per task (a fraction when < 1); None = all')
    batch_size: int = setting(8, within=AT_LEAST_ONE, help='lm-eval requests per forward')
    max_length: Optional[int] = setting(None, within=AT_LEAST_ONE, help="context length in tokens; None = the model's")
    apply_chat_template: bool = setting(False, help="render contexts with the tokenizer's chat template")
    system_instruction: Optional[str] = setting(None, help="system message of every request (default: none; a λ-conditioned policy gets its evaluation λ's preamble)")
    bootstrap_iters: int = setting(0, within=NON_NEGATIVE, help='resamples for standard errors (0: none; the objective needs the means)')
    seed: int = setting(1234, help="lm-eval's seed (few-shot sampling)")

    def __post_init__(self) -> None:
        check_settings(self, "benchmarks")
        names = [task.name for task in self.tasks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"benchmarks.tasks names {', '.join(repeated)} more than once")

    @property
    def enabled(self) -> bool:
        return bool(self.tasks)

    def metric_names(self) -> list[str]:
        return [task.metric_name for task in self.tasks] + ([MEAN] if self.tasks else [])


def task_manager(config: BenchmarkConfig):
    """An lm-eval ``TaskManager`` that knows the shipped tasks, ``include_paths`` and, only when
    a task needs them, lm-eval's own (indexing its ~15,000 task files takes ~15 s)."""
    from lm_eval.tasks import TaskManager

    paths = [str(TASKS_DIR), *(str(Path(path).absolute()) for path in config.include_paths)]
    for path in paths:
        if not Path(path).is_dir():
            raise FileNotFoundError(f"benchmarks.include_paths: {path} is not a directory")
    local = TaskManager(include_path=paths, include_defaults=False)
    if all(task.name in local.all_tasks for task in config.tasks):
        return local
    return TaskManager(include_path=paths)


def check_tasks(config: BenchmarkConfig, manager=None) -> list[str]:
    """Check every task exists and declares its metric (and filter), before any model is loaded.

    Returns one line per task; raises ``ValueError`` naming the task and what it offers.
    """
    manager = manager or task_manager(config)
    lines = []
    for task in config.tasks:
        entry = manager.task_index.get(task.name)
        if entry is None:
            close = difflib.get_close_matches(task.name, manager.all_tasks, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"benchmarks task {task.name!r} is not an lm-eval task or group{hint}")
        metrics, filters = declared_metrics(entry.cfg or {})
        if metrics and task.metric not in metrics:
            raise ValueError(f"benchmarks task {task.name}: metric {task.metric!r} is not one it reports ({', '.join(metrics)})")
        if task.filter not in filters:
            raise ValueError(f"benchmarks task {task.name}: filter {task.filter!r} is not one of its filters ({', '.join(filters)})")
        shots = "task default" if task.num_fewshot is None else f"{task.num_fewshot}-shot"
        lines.append(f"benchmark {task.name}: {task.metric} ({task.filter}), {shots}")
    return lines


def declared_metrics(task_config: dict) -> tuple[list[str], list[str]]:
    """The metrics and filter names a task's (or group's) YAML declares; no metrics = unknown
    (a Python-defined task), which only its results can tell."""
    metric_list = task_config.get("metric_list") or task_config.get("aggregate_metric_list") or []
    metrics = [item["metric"] for item in metric_list if isinstance(item.get("metric"), str)]
    filters = [item["name"] for item in task_config.get("filter_list") or []] or ["none"]
    return metrics, filters


def read_metric(results: dict, task: BenchmarkTask) -> float:
    """``task``'s metric from ``simple_evaluate``'s ``results`` (groups report there too)."""
    reported = results.get(task.name)
    if reported is None:
        raise ValueError(f"lm-eval returned no results for {task.name} (it returned {', '.join(results)})")
    if task.result_key not in reported:
        offered = sorted(key for key in reported if "," in key and "_stderr" not in key)
        raise ValueError(f"lm-eval task {task.name} reports no {task.result_key!r}; it reports {', '.join(offered)}")
    return float(reported[task.result_key])


def with_mean(per_task: dict[str, float]) -> dict[str, float]:
    """``lm_eval/<task>`` for each task and ``lm_eval/mean``, their unweighted mean."""
    metrics = {PREFIX + name: value for name, value in per_task.items()}
    metrics[MEAN] = sum(per_task.values()) / len(per_task)
    return metrics


@torch.no_grad()
def run_benchmarks(model, tokenizer, config: BenchmarkConfig, *, manager=None, log_samples: bool = False, autocast: str = "auto") -> dict:
    """Evaluate ``model`` (any causal LM, a PEFT model included) on ``config.tasks``; ``autocast``:
    the run's ``model.autocast``.

    Returns ``{"metrics": {lm_eval/<task>: value, ..., lm_eval/mean: value}, "results":
    lm-eval's per-task results, "samples": per-document records (with ``log_samples``)}``.
    Tasks are run in groups of equal few-shot count, one ``simple_evaluate`` call per group.
    """
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    if not config.tasks:
        raise ValueError("benchmarks.tasks is empty: name lm-eval tasks (e.g. benchmarks_config=configs/eval/paper.yaml)")
    manager = manager or task_manager(config)
    check_tasks(config, manager)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)  # its per-task INFO lines drown the progress bars
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    wrapped = HFLM(
        pretrained=model, tokenizer=tokenizer, batch_size=config.batch_size, max_length=config.max_length,
        mixed_precision_dtype=resolve_autocast(autocast, device),
    )
    per_task: dict[str, float] = {}
    results: dict[str, dict] = {}
    samples: dict[str, list] = {}
    try:
        for num_fewshot, group in groupby(sorted(config.tasks, key=_fewshot_order), key=lambda task: task.num_fewshot):
            group = list(group)
            output = simple_evaluate(
                model=wrapped, tasks=[task.name for task in group], num_fewshot=num_fewshot, task_manager=manager,
                limit=config.limit, bootstrap_iters=config.bootstrap_iters, apply_chat_template=config.apply_chat_template,
                fewshot_as_multiturn=config.apply_chat_template, system_instruction=config.system_instruction,
                log_samples=log_samples, random_seed=config.seed, numpy_random_seed=config.seed,
                torch_random_seed=config.seed, fewshot_random_seed=config.seed,
            )
            for task in group:
                per_task[task.name] = read_metric(output["results"], task)
            results.update(output["results"])
            samples.update(output.get("samples") or {})
    finally:
        model.train(was_training)
    ordered = {task.name: per_task[task.name] for task in config.tasks}
    return {"metrics": with_mean(ordered), "results": results, "samples": samples}


def _fewshot_order(task: BenchmarkTask) -> int:
    return -1 if task.num_fewshot is None else task.num_fewshot
