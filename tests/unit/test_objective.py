"""The configured objective on model outputs: the pairwise losses forward only their pair."""

import numpy as np
import pytest
import torch

from lambda_dpo.data import ListwiseCollator, ListwiseExample, encode_examples
from lambda_dpo.modeling import response_logps
from lambda_dpo.objective import LossConfig, compute_objective, pairwise_batch

DIMENSIONS = ["helpfulness", "honesty"]


@pytest.fixture(scope="module")
def tiny_model(tiny_tokenizer):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained("configs/models/tiny-llama")
    config.vocab_size = len(tiny_tokenizer)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def batch_of(tokenizer):
    texts = ["Plants turn light into sugar.", "I am not sure.", "Forty two.", "The quick brown fox jumps over the lazy dog."]
    ratings = [
        np.array([[4.0, 1.0, 3.0, 2.0], [2.0, 2.0, 5.0, np.nan]]),
        np.array([[3.0, 3.0, 3.0, np.nan], [3.0, 3.0, 3.0, np.nan]]),  # every response tied: no pair, skipped
        np.array([[1.0, 5.0, np.nan, np.nan], [5.0, 1.0, np.nan, np.nan]]),
    ]
    examples = [
        ListwiseExample(0, "r0", "Explain photosynthesis in one sentence.", tuple(texts), ratings[0]),
        ListwiseExample(1, "r1", "Write a haiku about autumn leaves.", tuple(texts[:3]), ratings[1][:, :3]),
        ListwiseExample(2, "r2", "What is the answer?", tuple(texts[2:]), ratings[2][:, :2]),
    ]
    encoded = encode_examples(examples, tokenizer, max_prompt_length=64, max_length=128)
    return ListwiseCollator(tokenizer.pad_token_id)(encoded)


@pytest.mark.parametrize("name", ["dpo", "simpo", "orpo"])
def test_a_pairwise_loss_on_its_two_forwarded_responses_equals_the_loss_on_all_of_them(tiny_tokenizer, tiny_model, name):
    batch = batch_of(tiny_tokenizer)
    lambdas = torch.tensor([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8]])
    config = LossConfig(name=name, beta=0.5)
    with torch.no_grad():
        full_logps = response_logps(tiny_model, batch)
        pair = pairwise_batch(batch, lambdas)
        pair_logps = response_logps(tiny_model, pair)
    reference = -torch.arange(12, dtype=torch.float32).view(3, 4) / 10  # any reference log-probs, looked up by slot
    full = compute_objective(config, full_logps, reference, batch, lambdas, DIMENSIONS)
    cut = compute_objective(config, pair_logps, reference.gather(1, pair["slots"]), pair, lambdas, DIMENSIONS)
    assert pair["input_ids"].shape[0] == 2 * 3 < batch["input_ids"].shape[0] == 4 * 3  # B·2 rows forwarded, not B·N
    assert pair["input_ids"].shape[1] <= batch["input_ids"].shape[1]
    torch.testing.assert_close(cut.loss, full.loss, rtol=1e-5, atol=1e-6)
    assert cut.count == full.count == 2 and cut.metrics == full.metrics  # the tied prompt is skipped in both
    # Prompt 0 under λ = (0.7, 0.3): best is response 0 (4, 2), worst response 1 (1, 2); prompt 2: 0.2·1+0.8·5 beats 0.2·5+0.8·1.
    assert pair["slots"][0].tolist() == [0, 1] and pair["slots"][2].tolist() == [0, 1]


def test_the_evaluation_does_not_depend_on_the_order_of_the_examples(tiny_tokenizer, tiny_model):
    from lambda_dpo.data.collate import longest_first
    from lambda_dpo.evaluate import evaluate_policy
    from lambda_dpo.modeling import ReferenceCache

    texts = ["Plants turn light into sugar.", "I am not sure.", "Forty two.", "The quick brown fox jumps over the lazy dog."]
    rng = np.random.default_rng(0)
    examples = [ListwiseExample(k, f"r{k}", "Say something " * (k + 1), tuple(texts[: 2 + k % 3]), rng.integers(1, 6, (2, 2 + k % 3)).astype(float)) for k in range(9)]
    encoded = encode_examples(examples, tiny_tokenizer, max_prompt_length=64, max_length=128)
    collator = ListwiseCollator(tiny_tokenizer.pad_token_id)
    cache = ReferenceCache(None, "k")
    cache.fill(tiny_model, [collator(encoded)], len(encoded), 4, torch.device("cpu"))
    options = dict(loss=LossConfig(), eval_lambda=np.array([0.5, 0.5]), dimensions=DIMENSIONS, batch_size=4, device=torch.device("cpu"))
    forward = evaluate_policy(tiny_model, encoded, collator, cache, **options)
    backward = evaluate_policy(tiny_model, encoded[::-1], collator, cache, **options)
    for name, value in forward.items():
        if not name.startswith("eval/"):
            assert backward[name] == pytest.approx(value, rel=1e-5, abs=1e-7, nan_ok=True), name
    lengths = [len(e.prompt_ids) + max(map(len, e.response_ids)) for e in longest_first(encoded)]
    assert lengths == sorted(lengths, reverse=True)
