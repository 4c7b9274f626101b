"""lm-eval benchmarks on the tiny model through the code path of the paper's config: the offline
tiny tasks (HF_DATASETS_OFFLINE=1), run on the in-memory LoRA policy at the end of training and
by ``lambda-dpo benchmark``."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from lambda_dpo.benchmarks import BenchmarkConfig, check_tasks, run_benchmarks, task_manager
from lambda_dpo.cli import main
from lambda_dpo.config import load_config
from lambda_dpo.data.encoding import render_prompt
from lambda_dpo.checkpoint_eval import load_checkpoint_policy
from lambda_dpo.train import train
from lambda_dpo.train_config import load_train_config

pytestmark = pytest.mark.integration

SMALL = ["data.source=synthetic:160", "optim.max_steps=12", "sft.steps=4", "eval.every=0", "eval.fraction=0.2", "model.lora.enabled=true"]


@pytest.fixture(scope="module")
def benchmarked_run(tmp_path_factory):
    """A tiny LoRA fine-tune whose final evaluation includes the offline benchmarks."""
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    output_dir = tmp_path_factory.mktemp("benchmarked")
    config = load_train_config("configs/train/tiny.yaml", [*SMALL, f"output_dir={output_dir}", "benchmarks_config=configs/eval/tiny.yaml"])
    return train(config)


def test_paper_benchmarks_are_lm_eval_tasks_that_report_the_configured_metrics():
    config = load_config(BenchmarkConfig, "configs/eval/paper.yaml")
    assert check_tasks(config, task_manager(config)) == [
        "benchmark mmlu: acc (none), 0-shot",
        "benchmark arc_challenge: acc_norm (none), 0-shot",
        "benchmark hellaswag: acc_norm (none), 0-shot",
        "benchmark truthfulqa_mc2: acc (none), 0-shot",
        "benchmark wsc273: acc (none), 0-shot",
        "benchmark gsm8k: exact_match (strict-match), 5-shot",
    ]


def test_training_reports_the_benchmarks_of_the_final_policy(benchmarked_run):
    saved = json.loads((benchmarked_run.run_dir / "eval.json").read_text())["metrics"]
    for name in ("lm_eval/tiny_helpful_mc", "lm_eval/tiny_truthful_mc", "lm_eval/mean"):
        assert saved[name] == benchmarked_run.metrics[name]
        assert 0 <= saved[name] <= 1
    assert saved["lm_eval/mean"] == pytest.approx((saved["lm_eval/tiny_helpful_mc"] + saved["lm_eval/tiny_truthful_mc"]) / 2)
    # 100 documents each: accuracies are whole percentages
    assert saved["lm_eval/tiny_helpful_mc"] * 100 == pytest.approx(round(saved["lm_eval/tiny_helpful_mc"] * 100))


def own_loglikelihood(model, tokenizer, prompt: str, response: str) -> float:
    """log p(response | prompt) as training scores it: the chat-templated prompt, then the response."""
    prompt_ids = tokenizer(render_prompt(prompt, tokenizer), add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + response_ids])).logits.float()
    logps = torch.log_softmax(logits[0, len(prompt_ids) - 1 : -1], dim=-1)
    return logps[torch.arange(len(response_ids)), torch.tensor(response_ids)].sum().item()


def test_lm_eval_scores_the_adapted_policy_exactly_as_training_does(benchmarked_run):
    _, tokenizer, model = load_checkpoint_policy(benchmarked_run.checkpoint)
    config = load_config(BenchmarkConfig, "configs/eval/tiny.yaml", ["limit=6"])
    outcome = run_benchmarks(model, tokenizer, config, log_samples=True)
    samples = outcome["samples"]["tiny_helpful_mc"]
    assert len(samples) == 6
    for sample in samples:
        doc = sample["doc"]
        lm_eval = [resp[0][0] for resp in sample["resps"]]
        ours = [own_loglikelihood(model, tokenizer, doc["prompt"], choice) for choice in doc["choices"]]
        np.testing.assert_allclose(lm_eval, ours, rtol=1e-5)
        assert sample["acc"] == float(np.argmax(ours) == doc["label"])
        with model.disable_adapter():  # the adapter is what was scored, not the base under it
            base = [own_loglikelihood(model, tokenizer, doc["prompt"], choice) for choice in doc["choices"]]
        assert not np.allclose(base, ours, rtol=1e-6, atol=0)
    accuracy = np.mean([sample["acc"] for sample in samples])
    assert outcome["metrics"]["lm_eval/tiny_helpful_mc"] == pytest.approx(accuracy)


def test_benchmark_command_scores_a_checkpoint_and_its_reference(benchmarked_run, tmp_path, capsys):
    checkpoint = benchmarked_run.checkpoint
    assert main(["benchmark", str(checkpoint), "limit=20", "--out", str(tmp_path / "policy.json")]) == 0
    assert main(["benchmark", str(checkpoint), "configs/eval/tiny.yaml", "limit=20", "--reference", "--out", str(tmp_path / "reference.json")]) == 0
    policy, reference = (json.loads((tmp_path / name).read_text()) for name in ("policy.json", "reference.json"))
    assert policy["config"]["limit"] == reference["config"]["limit"] == 20
    assert set(policy["metrics"]) == {"lm_eval/tiny_helpful_mc", "lm_eval/tiny_truthful_mc", "lm_eval/mean"}
    assert reference["reference"] and not policy["reference"]
    assert "tiny_truthful_mc" in capsys.readouterr().out
    assert main(["benchmark", str(checkpoint), "tasks=[{name: tiny_helpful_mc, metric: exact_match}]"]) == 2
    assert "metric 'exact_match' is not one it reports (acc, acc_norm)" in capsys.readouterr().err


def test_a_misspelt_benchmark_task_stops_the_run_before_it_trains(tmp_path):
    config = load_train_config("configs/train/tiny.yaml", [*SMALL, f"output_dir={tmp_path}", "benchmarks.tasks=[{name: tiny_helpful_mc, filter: strict-match}]"])
    with pytest.raises(ValueError, match="filter 'strict-match' is not one of its filters"):
        train(config)
    assert not (tmp_path / "checkpoints").exists()
