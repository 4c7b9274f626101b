"""lm-eval benchmark settings, metric names and checks, without running a model."""

from __future__ import annotations

import multiprocessing
import os
import socket

import pytest

from lambda_dpo.benchmarks import (
    MEAN,
    BenchmarkConfig,
    BenchmarkTask,
    check_tasks,
    declared_metrics,
    read_metric,
    task_manager,
    with_mean,
)
from lambda_dpo.config import ConfigError, load_config
from lambda_dpo.distributed import on_rank_zero
from lambda_dpo.tasks.tiny_preference.utils import TASK_DIMENSIONS, build_docs, unique_best
from lambda_dpo.train_config import load_train_config
from search.sweep_config import load_sweep_config
from tests.unit.rank_workers import rank_zero_worker

PAPER = "configs/eval/paper.yaml"
TINY = "configs/eval/tiny.yaml"


def test_paper_config_names_the_papers_six_benchmarks_and_their_metrics():
    config = load_config(BenchmarkConfig, PAPER)
    assert [(t.name, t.metric, t.filter) for t in config.tasks] == [
        ("mmlu", "acc", "none"), ("arc_challenge", "acc_norm", "none"), ("hellaswag", "acc_norm", "none"),
        ("truthfulqa_mc2", "acc", "none"), ("wsc273", "acc", "none"), ("gsm8k", "exact_match", "strict-match"),
    ]
    assert config.metric_names()[-1] == MEAN == "lm_eval/mean"
    assert config.metric_names()[0] == "lm_eval/mmlu"


def test_mean_is_the_unweighted_mean_of_the_task_metrics():
    metrics = with_mean({"a": 0.5, "b": 0.25, "c": 0.0})
    assert metrics == {"lm_eval/a": 0.5, "lm_eval/b": 0.25, "lm_eval/c": 0.0, "lm_eval/mean": 0.25}


def test_read_metric_takes_the_configured_metric_under_its_filter():
    results = {"gsm8k": {"exact_match,strict-match": 0.3, "exact_match,flexible-extract": 0.4, "exact_match_stderr,strict-match": "N/A"}}
    assert read_metric(results, BenchmarkTask("gsm8k", "exact_match", "flexible-extract")) == 0.4
    with pytest.raises(ValueError, match=r"gsm8k reports no 'exact_match,none'; it reports exact_match,flexible-extract, exact_match,strict-match"):
        read_metric(results, BenchmarkTask("gsm8k", "exact_match"))
    with pytest.raises(ValueError, match="no results for arc_easy"):
        read_metric(results, BenchmarkTask("arc_easy"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["tasks=[{name: a}, {name: a}]"], "names a more than once"),
        (["tasks=[{metric: acc}]"], "needs a name"),
        (["tasks=[{name: a, num_fewshot: -1}]"], "num_fewshot must be ≥ 0"),
        (["limit=0"], "limit must be > 0"),
        (["tasks=[{name: a, metrc: acc}]"], "metrc"),
    ],
)
def test_bad_benchmark_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(BenchmarkConfig, None, overrides)


def test_declared_metrics_of_a_task_a_group_and_a_filtered_task():
    assert declared_metrics({"metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}) == (["acc", "acc_norm"], ["none"])
    assert declared_metrics({"aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}]}) == (["acc"], ["none"])
    assert declared_metrics({"metric_list": [{"metric": "exact_match"}], "filter_list": [{"name": "strict-match"}]}) == (["exact_match"], ["strict-match"])


def test_shipped_tasks_are_found_without_indexing_lm_evals_own():
    config = load_config(BenchmarkConfig, TINY)
    manager = task_manager(config)
    assert "tiny_helpful_mc" in manager.all_tasks and "arc_challenge" not in manager.all_tasks
    assert check_tasks(config, manager) == ["benchmark tiny_helpful_mc: acc (none), task default", "benchmark tiny_truthful_mc: acc (none), task default"]


@pytest.mark.parametrize(
    "task, message",
    [
        ({"name": "tiny_helpfull_mc"}, r"not an lm-eval task or group; did you mean tiny_helpful_mc"),
        ({"name": "tiny_helpful_mc", "metric": "exact_match"}, r"metric 'exact_match' is not one it reports \(acc, acc_norm\)"),
        ({"name": "tiny_helpful_mc", "filter": "strict-match"}, r"filter 'strict-match' is not one of its filters \(none\)"),
    ],
)
def test_check_tasks_names_the_task_and_what_it_offers(task, message):
    config = BenchmarkConfig(tasks=[BenchmarkTask(**task)])
    local = task_manager(BenchmarkConfig(tasks=[BenchmarkTask("tiny_helpful_mc")]))  # no 15 s index of lm-eval's tasks
    with pytest.raises(ValueError, match=message):
        check_tasks(config, local)


def test_include_paths_must_be_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmarks.include_paths"):
        task_manager(BenchmarkConfig(include_paths=[str(tmp_path / "nowhere")]))


def test_benchmarks_config_fills_the_train_configs_benchmarks_under_its_own_keys(tmp_path):
    config = load_train_config("configs/train/tiny.yaml", [f"benchmarks_config={TINY}", "benchmarks.limit=10"])
    assert [task.name for task in config.benchmarks.tasks] == ["tiny_helpful_mc", "tiny_truthful_mc"]
    assert (config.benchmarks.limit, config.benchmarks.batch_size, config.benchmarks.apply_chat_template) == (10, 32, True)
    assert not load_train_config("configs/train/tiny.yaml").benchmarks.enabled
    with pytest.raises(ConfigError, match="benchmarks_config: config file not found"):
        load_train_config("configs/train/tiny.yaml", [f"benchmarks_config={tmp_path / 'none.yaml'}"])


def test_a_train_yaml_naming_a_benchmarks_config_fills_a_sweeps_train_benchmarks(tmp_path):
    train_yaml = tmp_path / "train.yaml"
    train_yaml.write_text(f"benchmarks_config: {os.path.abspath(TINY)}\nbenchmarks:\n  limit: 20\n")
    config = load_sweep_config("configs/sweep/tiny.yaml", [f"train_config={train_yaml}", "objective=lm_eval/mean", "train.benchmarks.batch_size=4"])
    assert [task.name for task in config.train.benchmarks.tasks] == ["tiny_helpful_mc", "tiny_truthful_mc"]
    assert (config.train.benchmarks.limit, config.train.benchmarks.batch_size) == (20, 4)


def test_a_sweep_objective_no_trial_reports_is_an_error():
    with pytest.raises(ConfigError, match=r"objective lm_eval/mean is not a benchmark metric the trials report; they report none"):
        load_sweep_config("configs/sweep/tiny.yaml", ["objective=lm_eval/mean"])
    with pytest.raises(ConfigError, match=r"objective lm_eval/arc_easy .* they report lm_eval/tiny_helpful_mc, lm_eval/tiny_truthful_mc, lm_eval/mean"):
        load_sweep_config("configs/sweep/tiny.yaml", ["objective=lm_eval/arc_easy", f"train.benchmarks_config={TINY}"])
    assert load_sweep_config("configs/sweep/tiny.yaml", ["objective=lm_eval/mean", f"train.benchmarks_config={TINY}"]).objective == "lm_eval/mean"


def test_tiny_tasks_answer_with_the_unique_best_rated_response():
    assert unique_best([3, 5, None, 4]) == 1
    assert unique_best([5, 5, 1, 2]) is None  # tied
    assert unique_best([None, None, 4, None]) is None  # one rated response is no choice
    for task, dimension in TASK_DIMENSIONS.items():
        docs = build_docs(dimension)
        shipped = [line for line in open(f"lambda_dpo/tasks/tiny_preference/{task}.jsonl")]
        assert len(docs) == len(shipped) == 100  # the shipped files are what the builder makes
        assert all(len(doc["choices"]) == 4 for doc in docs)


def test_on_rank_zero_outside_a_process_group_just_computes():
    assert on_rank_zero(lambda: {"lm_eval/mean": 0.5}) == {"lm_eval/mean": 0.5}


def test_on_rank_zero_gives_rank_zeros_result_or_failure_to_every_worker():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=rank_zero_worker, args=(rank, port, queue)) for rank in (0, 1)]
    for worker in workers:
        worker.start()
    outcomes = {(rank, fail): value for rank, fail, value in (queue.get(timeout=60) for _ in range(4))}
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == {
        (0, False): {"lm_eval/mean": 0.25},
        (1, False): {"lm_eval/mean": 0.25},  # computed on rank 0 only (rank 1 would fail the assert)
        (0, True): "KeyError: 'no such task'",
        (1, True): "RuntimeError: rank 0 failed: KeyError('no such task')",  # told, not left waiting
    }
