"""The training loop end to end on the tiny model (random init, local tokenizer, synthetic data)."""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lambda_dpo import modeling
from lambda_dpo.cli import main
from lambda_dpo.config import load_config
from lambda_dpo.data.records import DEFAULT_DIMENSIONS
from lambda_dpo.loss import mixed_target
from lambda_dpo.preferences import ratings_to_targets
from lambda_dpo.checkpoints import latest_checkpoint
from lambda_dpo.run_setup import load_datasets
from lambda_dpo.train import train
from lambda_dpo.train_config import TrainConfig

pytestmark = pytest.mark.integration

TINY = "configs/train/tiny.yaml"
# A small, fast variant of the tiny default for the behaviour tests.
SMALL = ["data.source=synthetic:160", "optim.max_steps=12", "sft.steps=4", "eval.every=0", "log_every=2", "eval.fraction=0.2"]
VOLATILE = ("eval/tokens_per_second", "eval/peak_memory_mb")


def small_config(output_dir: Path, *overrides: str) -> TrainConfig:
    return load_config(TrainConfig, TINY, [*SMALL, f"output_dir={output_dir}", *overrides])


def chance_top1(config: TrainConfig) -> float:
    """Expected top-1 accuracy of a random pick on the held-out set at the evaluation λ."""
    _, held_out = load_datasets(config)
    ratings = torch.as_tensor(np.stack([e.ratings for e in held_out]), dtype=torch.float32)
    targets, target_mask = ratings_to_targets(ratings)
    lambdas = torch.as_tensor(config.eval.mixed_lambda(len(DEFAULT_DIMENSIONS)), dtype=torch.float32).expand(len(held_out), -1)
    mixed, eligible = mixed_target(targets, lambdas, target_mask=target_mask)
    mixed = mixed.masked_fill(~eligible, -1.0)
    best = (mixed >= mixed.max(-1, keepdim=True).values - 1e-9) & eligible
    informative = best.sum(-1) < eligible.sum(-1)
    return (best.sum(-1) / eligible.sum(-1))[informative].mean().item()


class Recorder:
    def __init__(self):
        self.rows = []

    def report(self, metrics, *, step, checkpoint=None):
        self.rows.append((step, dict(metrics), checkpoint))

    def close(self):
        pass


# ----------------------------------------------------------------------------- the tiny default


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`lambda-dpo train configs/train/tiny.yaml`, exactly as the README runs it."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    started = time.perf_counter()
    assert main(["train", TINY, f"output_dir={run_dir}"]) == 0
    return run_dir, time.perf_counter() - started


def test_tiny_default_finishes_in_five_minutes_and_lifts_mixed_accuracy_from_chance(tiny_run):
    run_dir, seconds = tiny_run
    assert seconds < 300
    metrics = json.loads((run_dir / "eval.json").read_text())["metrics"]
    chance = chance_top1(load_config(TrainConfig, run_dir / "config.yaml"))
    assert 0.25 <= chance < 0.4  # above 1/4: ties in the mixed target and N/A-shortened lists
    assert metrics["top1_accuracy/mixed"] >= 0.5


def test_tiny_default_training_loss_decreases_and_the_run_is_complete(tiny_run):
    run_dir, _ = tiny_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert losses[-1] < losses[0] - 0.05
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint.name == "step-300" and (checkpoint / "model.safetensors").exists()
    assert {"config.yaml", "training_state.pt"} <= {p.name for p in checkpoint.iterdir()}
    assert (run_dir / "config.yaml").exists() and list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "tokenizer" / "tokenizer.json").exists() and (run_dir / "reference" / "model.safetensors").exists()


def test_evaluate_command_reproduces_the_runs_evaluation(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    out = tmp_path / "evaluation.json"
    assert main(["evaluate", str(latest_checkpoint(run_dir)), "--out", str(out)]) == 0
    again = json.loads(out.read_text())["metrics"]
    recorded = json.loads((run_dir / "eval.json").read_text())["metrics"]
    for name, value in recorded.items():
        if name not in VOLATILE and value is not None and not math.isnan(value):
            assert again[name] == pytest.approx(value, abs=1e-6), name
    assert main(["evaluate", str(latest_checkpoint(run_dir)), "--lambda", "1,0,0,0", "--data", "synthetic:60:seed=9", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["top1_accuracy/mixed"] == pytest.approx(metrics["top1_accuracy/helpfulness"])


def test_evaluate_keeps_a_result_per_lambda_and_names_the_lambda(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["evaluate", str(latest_checkpoint(run_dir))]) == 0
        assert torch.get_num_threads() == 1  # the run's `threads`: on 2 threads the tiny model evaluated 10x slower
    finally:
        torch.set_num_threads(threads)
    default_title = capsys.readouterr().out
    assert main(["evaluate", str(latest_checkpoint(run_dir)), "--lambda", "1,0,0,0"]) == 0
    given_title = capsys.readouterr().out
    default = json.loads((latest_checkpoint(run_dir) / "evaluation.json").read_text())
    given = json.loads((latest_checkpoint(run_dir) / "evaluation-lambda-1-0-0-0.json").read_text())
    assert default["lambda"] == [0.25] * 4 and not default["lambda_given"] and given["lambda"] == [1, 0, 0, 0]
    assert default["metrics"]["top1_accuracy/mixed"] != given["metrics"]["top1_accuracy/mixed"] or default["metrics"]["loss"] != given["metrics"]["loss"]
    assert "helpfulness 0.25" in " ".join(default_title.split()) and "helpfulness 1," in " ".join(given_title.split())


# ----------------------------------------------------------------------------- λ matters


def test_one_hot_lambda_gives_the_best_accuracy_on_its_own_dimension(tmp_path):
    accuracy = np.zeros((4, 4))  # [trained on e_k, measured on dimension j]
    for k in range(4):
        weights = [1.0 if i == k else 0.0 for i in range(4)]
        config = load_config(
            TrainConfig,
            TINY,
            [f"output_dir={tmp_path / str(k)}", "data.source=synthetic:1500", "optim.max_steps=120", "sft.steps=40",
             "eval.every=0", "save_every=0", "lambdas.sampler=fixed", f"lambdas.weights={weights}"],
        )
        metrics = train(config).metrics
        accuracy[k] = [metrics[f"top1_accuracy/{d}"] for d in DEFAULT_DIMENSIONS]
    wins = [int(np.argmax(accuracy[:, j]) == j) for j in range(4)]
    assert sum(wins) >= 3, accuracy


# ----------------------------------------------------------------------------- resume


def _comparable(metrics):
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def test_a_killed_run_resumed_from_its_checkpoint_ends_like_an_uninterrupted_one(tmp_path):
    overrides = ["data.source=synthetic:240", "optim.max_steps=40", "sft.steps=4", "eval.every=0", "save_every=5"]
    uninterrupted = train(load_config(TrainConfig, TINY, [*overrides, f"output_dir={tmp_path / 'a'}"]))

    run_dir = tmp_path / "b"
    command = [sys.executable, "-m", "lambda_dpo.cli", "train", TINY, *overrides, f"output_dir={run_dir}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"})
    deadline = time.monotonic() + 240
    while latest_checkpoint(run_dir) is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = latest_checkpoint(run_dir)
    assert killed_at is not None and killed_at.name != "step-40"

    assert main(["train", "--resume", str(run_dir)]) == 0
    resumed = json.loads((run_dir / "eval.json").read_text())["metrics"]
    for name, value in _comparable(uninterrupted.metrics).items():
        assert resumed[name] == pytest.approx(value, abs=1e-5, nan_ok=True), name


def test_lora_run_interrupted_in_process_resumes_exactly(tmp_path):
    lora = ["model.lora.enabled=true", "model.lora.r=4", "model.lora.dropout=0.1", "save_every=5", "optim.max_steps=16"]
    uninterrupted = train(small_config(tmp_path / "a", *lora))

    class Interrupted(Exception):
        pass

    def interrupt(step):
        if step == 7:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(small_config(tmp_path / "b", *lora), on_step=interrupt)
    checkpoint = latest_checkpoint(tmp_path / "b")
    assert checkpoint.name == "step-5" and (checkpoint / "adapter_model.safetensors").exists()
    resumed = train(small_config(tmp_path / "b", *lora), resume_from=checkpoint)
    for name, value in _comparable(uninterrupted.metrics).items():
        assert resumed.metrics[name] == pytest.approx(value, abs=1e-5, nan_ok=True), name


def test_starting_over_a_run_with_checkpoints_is_refused(tmp_path, capsys):
    train(small_config(tmp_path / "run", "optim.max_steps=2", "sft.steps=0"))
    assert main(["train", TINY, *SMALL, f"output_dir={tmp_path / 'run'}"]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def test_resume_passes_over_a_damaged_newest_checkpoint_and_ends_like_an_uninterrupted_run(tmp_path, capsys):
    """A truncated model.safetensors in the newest checkpoint used to end `train --resume` with a
    SafetensorError while the checkpoint before it was intact."""
    overrides = [*SMALL, "optim.max_steps=4", "save_every=2", "sft.steps=0"]
    assert main(["train", TINY, *overrides, f"output_dir={tmp_path / 'whole'}"]) == 0
    assert main(["train", TINY, *overrides, f"output_dir={tmp_path / 'run'}"]) == 0
    weights = tmp_path / "run" / "checkpoints" / "step-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert "step-4 is damaged (model.safetensors has 100 bytes" in err and "resuming from step-2" in out
    resumed = json.loads((tmp_path / "run" / "eval.json").read_text())["metrics"]
    whole = json.loads((tmp_path / "whole" / "eval.json").read_text())["metrics"]
    assert resumed["loss"] == pytest.approx(whole["loss"], abs=1e-5)
    assert latest_checkpoint(tmp_path / "run").name == "step-4"
    logged = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged))  # steps 3 and 4 logged once, though trained twice


def test_a_packed_run_ends_where_a_padded_one_does(tmp_path):
    """20 steps in the shared-prefix layout give the padded layout's metrics (the log-probs agree to
    float rounding, so the trajectories do too)."""
    results = {}
    for packing in ("none", "shared_prefix"):
        config = small_config(tmp_path / packing, "optim.max_steps=20", "log_every=1", f"data.packing={packing}", "data.max_tokens_per_row=200")
        recorder = Recorder()
        result = train(config, reporter=recorder)
        results[packing] = (result.metrics, [metrics["train/loss"] for _, metrics, _ in recorder.rows if "train/loss" in metrics])
    (padded, padded_losses), (packed, packed_losses) = results["none"], results["shared_prefix"]
    assert len(packed_losses) == 20
    np.testing.assert_allclose(packed_losses, padded_losses, rtol=1e-4, atol=1e-4)
    for name, value in _comparable(padded).items():
        assert packed[name] == pytest.approx(value, abs=1e-4, nan_ok=True), name


# ----------------------------------------------------------------------------- the reference


def test_reference_forward_runs_once_per_example_and_never_again(tmp_path, monkeypatch):
    caches, entered = [], []
    original_fill, original_mode = modeling.ReferenceCache.fill, modeling.reference_mode

    def recording_fill(self, *args, **kwargs):
        caches.append(self)
        return original_fill(self, *args, **kwargs)

    def counting_mode(model):
        entered.append(1)
        return original_mode(model)

    monkeypatch.setattr(modeling.ReferenceCache, "fill", recording_fill)
    monkeypatch.setattr(modeling, "reference_mode", counting_mode)
    # 128 training prompts in batches of 8 → 16 steps per epoch; 40 steps = 2.5 epochs.
    config = small_config(tmp_path / "run", "optim.max_steps=40", "save_every=20", "sft.steps=0")
    train(config)
    assert [cache.forward_rows for cache in caches] == [128 * 4, 32 * 4]  # every sequence once: train, eval
    assert len(entered) == 2

    caches.clear()
    entered.clear()
    train(config, resume_from=latest_checkpoint(tmp_path / "run") .parent / "step-20")
    assert [cache.forward_rows for cache in caches] == [0, 0] and not entered  # read back from disk


def test_runs_that_differ_in_seed_share_a_reference_cache_and_an_sft_warm_start_does_not(tmp_path, monkeypatch):
    caches = []
    original_fill = modeling.ReferenceCache.fill

    def recording_fill(self, *args, **kwargs):
        caches.append(self)
        return original_fill(self, *args, **kwargs)

    monkeypatch.setattr(modeling.ReferenceCache, "fill", recording_fill)
    shared = f"reference_cache={tmp_path / 'shared'}"
    for seed in (0, 1):
        train(small_config(tmp_path / f"seed-{seed}", "optim.max_steps=2", "sft.steps=0", f"seed={seed}", shared))
    assert [cache.forward_rows for cache in caches] == [128 * 4, 32 * 4, 0, 0]  # the second run reads the first's
    assert len(list((tmp_path / "shared").glob("*.pt"))) == 2 and not (tmp_path / "seed-1" / "reference_logps").exists()
    caches.clear()
    # The reference is then the warm-started model, which the seed and λ shape (λ picks each best response).
    for name, overrides in [("sft-0", ["seed=0"]), ("sft-1", ["seed=1"]), ("sft-lambda", ["seed=0", "lambdas.sampler=fixed", "lambdas.weights=[1,0,0,0]"])]:
        train(small_config(tmp_path / name, "optim.max_steps=2", "sft.steps=2", shared, *overrides))
    assert [cache.forward_rows for cache in caches] == [128 * 4, 32 * 4] * 3


def test_a_lora_run_holds_exactly_one_copy_of_the_base_weights(tmp_path):
    config = small_config(tmp_path / "run", "model.lora.enabled=true", "model.lora.r=4", "optim.max_steps=3")
    seen = []

    def inspect(step):
        gc.collect()
        tensors = [obj for obj in gc.get_objects() if isinstance(obj, torch.Tensor)]
        embedding_shape = (len_vocab(config), 64)
        storages = {t.untyped_storage().data_ptr() for t in tensors if tuple(t.shape) == embedding_shape}
        models = [obj for obj in gc.get_objects() if type(obj).__name__ == "LlamaForCausalLM"]
        seen.append((len(storages), len(models)))

    train(config, on_step=inspect)
    assert seen and all(entry == (1, 1) for entry in seen), seen


def len_vocab(config: TrainConfig) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(Path(config.output_dir) / "tokenizer"))


# ----------------------------------------------------------------------------- losses and errors


@pytest.mark.parametrize("loss", ["dpo", "simpo", "orpo"])
def test_baseline_losses_train_and_report_every_metric(tmp_path, loss):
    result = train(small_config(tmp_path / loss, f"loss.name={loss}", "optim.max_steps=4"))
    assert math.isfinite(result.metrics["loss"]) and 0 <= result.metrics["top1_accuracy/mixed"] <= 1
    assert {f"ndcg/{d}" for d in DEFAULT_DIMENSIONS} <= set(result.metrics)


class RecordingReporter:
    """Keeps every report and the description of every step shown with progress before training."""

    def __init__(self):
        self.reports, self.tracked = [], []

    def report(self, metrics, *, step, checkpoint=None):
        self.reports.append({"step": step, **metrics})

    def track(self, iterable, *, total, description):
        self.tracked.append((description, total))
        return iterable

    def close(self):
        pass


def poison_the_third_loss(monkeypatch):
    """Make the loss of the third micro-batch NaN (a transient fault, like one bad batch)."""
    import dataclasses

    import lambda_dpo.train as train_module

    calls = []
    original = train_module.compute_objective

    def poisoned(*args, **kwargs):
        output = original(*args, **kwargs)
        calls.append(1)
        return dataclasses.replace(output, loss=output.loss * float("nan")) if len(calls) == 3 else output

    monkeypatch.setattr(train_module, "compute_objective", poisoned)


def test_a_non_finite_step_stops_training_naming_the_step_the_term_and_the_last_finite_values(tmp_path, monkeypatch):
    from lambda_dpo.train import NonFiniteError

    poison_the_third_loss(monkeypatch)
    config = small_config(tmp_path / "run", "sft.steps=0", "save_every=2")
    with pytest.raises(NonFiniteError, match=r"^step 3: loss nan, gradient norm nan: the loss is non-finite; last finite: step 2, loss [0-9.]+, gradient norm [0-9.]+$"):
        train(config)
    assert latest_checkpoint(tmp_path / "run").name == "step-2"  # nothing after the fault was saved


def test_a_non_finite_step_can_be_skipped_and_counted(tmp_path, monkeypatch, caplog):
    poison_the_third_loss(monkeypatch)
    reporter = RecordingReporter()
    result = train(small_config(tmp_path / "run", "sft.steps=0", "optim.on_nonfinite=skip"), reporter=reporter)
    final = reporter.reports[-1]
    assert final["train/skipped_steps"] == 1 and math.isfinite(final["train/loss"]) and math.isfinite(result.metrics["loss"])
    assert "step 3: loss nan" in caplog.text and "the step's update is skipped" in caplog.text


def test_final_metrics_keep_training_and_evaluation_throughput_apart_and_set_up_shows_progress(tmp_path):
    reporter = RecordingReporter()
    config = small_config(tmp_path / "run", "save_every=6")
    train(config, reporter=reporter)
    final = reporter.reports[-1]
    assert {"train/tokens_per_second", "train/peak_memory_mb", "eval/tokens_per_second", "eval/peak_memory_mb"} <= set(final)
    assert "tokens_per_second" not in final and "peak_memory_mb" not in final
    assert final["train/tokens_per_second"] != final["eval/tokens_per_second"]
    assert reporter.tracked == [("SFT warm start", 4), ("reference log-probs (train: 128 prompts, batches of 16)", 8), ("reference log-probs (eval: 32 prompts, batches of 16)", 2)]
    again = RecordingReporter()
    train(config, reporter=again, resume_from=tmp_path / "run" / "checkpoints" / "step-6")
    assert again.tracked == []  # the reference weights and log-probs are read back, not computed


def test_bad_data_and_bad_configs_fail_with_clear_messages(tmp_path, capsys):
    from tests.factories import same_ratings, uf_record, write_jsonl

    good = uf_record("Say hi.", [("Hi!", same_ratings("5")), ("Go away.", same_ratings("1"))])
    bad = uf_record("Say bye.", [("Bye!", same_ratings("5")), ("Hm.", {**same_ratings("2"), "honesty": "seven"})])
    data = write_jsonl(tmp_path / "data.jsonl", [good] * 20 + [bad])
    assert main(["train", TINY, f"data.source={data}", f"output_dir={tmp_path / 'run'}"]) == 2
    error = capsys.readouterr().err
    assert "data.jsonl[20]" in error and "honesty" in error

    assert main(["train", TINY, "optim.bogus=1"]) == 2
    assert "optim.bogus" in capsys.readouterr().err
    assert main(["train", TINY, "lambdas.sampler=fixed", "lambdas.weights=[0.5,0.5]"]) == 2
    assert "lambdas.weights" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a checkpoint directory" in capsys.readouterr().err


def test_gradient_checkpointing_changes_memory_not_results(tmp_path):
    plain = train(small_config(tmp_path / "plain", "optim.max_steps=4", "sft.steps=0"))
    checkpointed = train(small_config(tmp_path / "checkpointed", "optim.max_steps=4", "sft.steps=0", "model.gradient_checkpointing=true"))
    for name, value in _comparable(plain.metrics).items():
        assert checkpointed.metrics[name] == pytest.approx(value, abs=1e-5, nan_ok=True), name


# ----------------------------------------------------------------------------- λ at inference


def test_a_lambda_conditioned_policy_is_steered_by_lambda_and_an_unconditioned_one_is_not(tmp_path, capsys):
    from lambda_dpo.generate import Generator
    from lambda_dpo.checkpoint_eval import checkpoint_evaluator, steerability_of

    conditioned = train(load_config(TrainConfig, "configs/train/tiny-conditioned.yaml", [f"output_dir={tmp_path / 'on'}", "optim.max_steps=1000"]))
    steered = steerability_of(checkpoint_evaluator(conditioned.checkpoint), DEFAULT_DIMENSIONS)
    unconditioned = train(small_config(tmp_path / "off", "optim.max_steps=6"))
    ignored = steerability_of(checkpoint_evaluator(unconditioned.checkpoint), DEFAULT_DIMENSIONS)
    assert ignored.score == pytest.approx(0.0, abs=1e-12)  # λ cannot reach a policy that never saw it
    assert steered.score > 0.25, steered.accuracy
    # The reference stayed on the plain prompt, so its cached values serve every λ.
    from transformers import AutoTokenizer

    from lambda_dpo.data.collate import ListwiseCollator
    from lambda_dpo.modeling import response_logps
    from lambda_dpo.reference import load_run_base
    from lambda_dpo.run_setup import encode

    config = load_config(TrainConfig, tmp_path / "on" / "config.yaml")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "on" / "tokenizer")
    plain = ListwiseCollator(tokenizer.pad_token_id)(encode(load_datasets(config)[1][:4], tokenizer, config.data))
    with torch.no_grad():
        expected = response_logps(load_run_base(config, tmp_path / "on").eval(), plain).mean
    cached = torch.load(tmp_path / "on" / "reference_logps" / "eval.pt", weights_only=True)["values"][:4, :, 1]
    torch.testing.assert_close(cached, expected, atol=1e-5, rtol=0)

    generator = Generator(conditioned.checkpoint)
    sampling = dict(max_new_tokens=24, temperature=1.0, seed=0)
    answers = {k: generator("Tell me about salt in cooking.", weights=list(np.eye(4)[k]), **sampling) for k in range(4)}
    assert len(set(answers.values())) > 1  # same seed, different λ: different answers
    command = ["generate", str(conditioned.checkpoint), "--lambda", "0,1,0,0", "--temperature", "1", "--seed", "0", "--max-new-tokens", "24"]
    assert main([*command, "Tell me about salt in cooking."]) == 0
    out = capsys.readouterr().out
    assert "prompt: Tell me about salt in cooking." in out and f"response: {answers[1].strip()}" in out
    with pytest.raises(ValueError, match="conditioning: none"):
        Generator(unconditioned.checkpoint)("Hi.", weights=[1.0, 0.0, 0.0, 0.0])


def test_a_conditioned_warm_start_learns_both_prompt_forms(tmp_path, monkeypatch):
    # The policy reads the conditioned prompt and its reference the plain one: SFT must see both.
    import lambda_dpo.run_setup as training

    forms = []
    real_batch = training.training_batch

    def recording_batch(*args):
        forms.append("plain" if args[-1] is None else "conditioned")
        return real_batch(*args)

    monkeypatch.setattr(training, "training_batch", recording_batch)
    train(small_config(tmp_path / "run", "conditioning=prompt", "sft.steps=2", "optim.max_steps=1"))
    assert forms[:5] == ["conditioned", "plain", "conditioned", "plain", "conditioned"]  # 2 SFT steps, then λ-DPO


def test_twenty_bf16_steps_give_the_held_out_metrics_of_fp32(tmp_path):
    """bf16 weights and bf16 autocast, as `auto` runs the tiny default on a GPU, against fp32.
    Tolerances: the held-out loss within 5% of what the 20 fp32 steps moved it from log 4 (policy =
    reference: the uniform listwise loss over 4 responses); top-1 accuracy within two standard
    errors of an accuracy on this many prompts (rounding may flip near-ties, no more than sampling
    would); the chosen responses' mean log-prob within two bf16 roundings of itself."""
    from safetensors.torch import load_file

    from lambda_dpo.precision import BF16_UNIT_ROUNDOFF

    common = ["data.source=synthetic:800", "optim.max_steps=20", "sft.steps=0", "eval.every=0", "save_every=0"]
    fp32 = train(load_config(TrainConfig, TINY, [*common, "model.dtype=float32", "model.autocast=none", f"output_dir={tmp_path / 'fp32'}"]))
    bf16 = train(load_config(TrainConfig, TINY, [*common, "model.dtype=bfloat16", "model.autocast=bfloat16", f"output_dir={tmp_path / 'bf16'}"]))
    weights = load_file(bf16.checkpoint / "model.safetensors")
    assert {tensor.dtype for tensor in weights.values()} == {torch.bfloat16}

    moved = math.log(4) - fp32.metrics["loss"]
    assert moved > 0.03
    assert abs(bf16.metrics["loss"] - fp32.metrics["loss"]) <= 0.05 * moved
    held_out = len(load_datasets(load_config(TrainConfig, TINY, common))[1])
    accuracy = fp32.metrics["top1_accuracy/mixed"]
    assert abs(bf16.metrics["top1_accuracy/mixed"] - accuracy) <= 2 * math.sqrt(accuracy * (1 - accuracy) / held_out)
    chosen = fp32.metrics["logps/chosen"]  # a mean log-prob per token: a bf16 result rounds it twice at most
    assert abs(bf16.metrics["logps/chosen"] - chosen) <= 2 * BF16_UNIT_ROUNDOFF * abs(chosen)
