"""Shared-prefix packing: the layout, its tree attention, and equality with the padded layout
(log-probs, loss, gradients) on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lambda_dpo.data.collate import ListwiseCollator
from lambda_dpo.data.encoding import EncodedExample
from lambda_dpo.data.packing import PADDING, LayoutSettings, attends, padded_layout, shared_prefix_layout
from lambda_dpo.modeling import ResponseScorer, add_lora, LoraConfig, response_logps
from tests.bf16_layouts import PRECISIONS, assert_layouts_agree_in_bf16


def encoded(key, prompt_length, response_lengths, *, start=5):
    """An example whose token ids say where they sit (distinct per example, prompt and response)."""
    prompt = tuple(range(start, start + prompt_length))
    responses = tuple(tuple(range(start + 100 * (i + 1), start + 100 * (i + 1) + n)) for i, n in enumerate(response_lengths))
    ratings = np.arange(2 * len(response_lengths), dtype=float).reshape(2, -1) % 5 + 1
    return EncodedExample(key, prompt, responses, ratings)


def batch_of(*examples, pad=0):
    return ListwiseCollator(pad)(list(examples))


def test_each_prompt_is_written_once_followed_by_its_responses_with_positions_restarting():
    batch = batch_of(encoded(0, 3, [2, 4]), encoded(1, 2, [1, 1, 3], start=40))
    layout = shared_prefix_layout(batch, max_tokens_per_row=100, pad_token_id=0)
    assert layout.input_ids.shape == (1, 3 + 2 + 4 + 2 + 1 + 1 + 3)
    assert layout.input_ids[0, :9].tolist() == [5, 6, 7, 105, 106, 205, 206, 207, 208]
    assert layout.position_ids[0, :9].tolist() == [0, 1, 2, 3, 4, 3, 4, 5, 6]
    assert layout.position_ids[0, 9:].tolist() == [0, 1, 2, 2, 2, 3, 4]
    assert layout.branches[0].tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2, 0, 0, 1, 2, 3, 3, 3]
    # Every response's first token is predicted from its prompt's last position (2), the rest from the token before.
    assert layout.positions.tolist()[:6] == [2, 3, 2, 5, 6, 7] and layout.targets.tolist()[:6] == [105, 106, 205, 206, 207, 208]
    assert sorted(set(layout.owners.tolist())) == [0, 1, 3, 4, 5]  # slot 2 of prompt 0 is padding


def test_the_same_tokens_are_scored_in_both_layouts():
    batch = batch_of(encoded(0, 3, [2, 4]), encoded(1, 2, [1, 1, 3], start=40), encoded(2, 6, [5, 2], start=70))
    padded, shared = padded_layout(batch), shared_prefix_layout(batch, max_tokens_per_row=20, pad_token_id=0)
    def scored(layout):
        return sorted(zip(layout.owners.tolist(), layout.targets.tolist()))
    assert scored(padded) == scored(shared)
    assert shared.input_ids.numel() < padded.input_ids.numel()


def test_prompts_are_packed_first_fit_decreasing_and_an_oversized_prompt_gets_a_row_of_its_own():
    batch = batch_of(encoded(0, 3, [2, 2]), encoded(1, 30, [20, 20], start=40), encoded(2, 2, [1, 1], start=90))
    layout = shared_prefix_layout(batch, max_tokens_per_row=12, pad_token_id=0)
    assert layout.input_ids.shape == (2, 70)  # [prompt 1] alone, over the budget; then [prompt 0, prompt 2]
    assert (layout.segments[0] == 1).all()
    assert layout.segments[1, :11].tolist() == [0] * 7 + [2] * 4 and (layout.segments[1, 11:] == PADDING).all()


def test_the_tree_mask_shows_a_response_its_prompt_and_itself_only():
    batch = batch_of(encoded(0, 2, [2, 2]), encoded(1, 1, [1, 1], start=40))
    layout = shared_prefix_layout(batch, max_tokens_per_row=100, pad_token_id=0)
    allowed = attends(layout.segments, layout.branches)[0].int()
    # prompt 0: p p | r1 r1 | r2 r2 ; prompt 1: p | r1 | r2
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 1, 0, 1],
    ])
    assert torch.equal(allowed, expected)


def test_padding_attends_to_itself_only():
    segments = torch.tensor([[0, 0, PADDING, PADDING]])
    branches = torch.tensor([[0, 1, 0, 0]])
    assert attends(segments, branches)[0].int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


# ----------------------------------------------------------------------------- on the tiny model


@pytest.fixture(scope="module")
def tiny_model(tiny_pretrained):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_pretrained, dtype=torch.float32)


def varied_batch(tokenizer, *, conditioned: bool = False):
    """Prompts of very different lengths and 2–4 responses (padded slots), from the tiny tokenizer."""
    from lambda_dpo.data.encoding import encode_examples
    from lambda_dpo.data.records import ListwiseExample

    prompts = ["Hi?", "Explain photosynthesis in one sentence, please, with all the detail you can muster about light and sugar.", "Why?"]
    if conditioned:
        prompts = [f"[λ: helpfulness 0.7, honesty 0.3] {p}" for p in prompts]
    responses = [["Yes.", "No, not at all.", "The quick brown fox jumps over the lazy dog again and again."],
                 ["Plants turn light into sugar.", "I am not sure."],
                 ["Because.", "Forty two.", "The lazy dog.", "Autumn leaves falling slowly."]]
    examples = [ListwiseExample(k, f"test[{k}]", p, tuple(r), np.arange(2 * len(r), dtype=float).reshape(2, -1) % 5 + 1) for k, (p, r) in enumerate(zip(prompts, responses))]
    return ListwiseCollator(tokenizer.pad_token_id)(encode_examples(examples, tokenizer, max_prompt_length=64, max_length=128))


@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("budget", [8, 64, 4096])
def test_packed_and_padded_log_probs_are_equal(tiny_model, tiny_tokenizer, conditioned, budget):
    batch = varied_batch(tiny_tokenizer, conditioned=conditioned)
    with torch.no_grad():
        padded = response_logps(tiny_model, batch)
        packed = response_logps(tiny_model, {**batch, "layout": LayoutSettings("shared_prefix", budget, tiny_tokenizer.pad_token_id)})
    assert torch.equal(packed.tokens, padded.tokens) and padded.tokens[1, 2:].eq(0).all()  # N < 4: padded slots score nothing
    torch.testing.assert_close(packed.sum, padded.sum, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed.mean, padded.mean, rtol=1e-5, atol=1e-6)


def test_packed_and_padded_give_the_same_loss_and_gradients(tiny_model, tiny_tokenizer):
    from lambda_dpo.objective import LossConfig, compute_objective

    batch = varied_batch(tiny_tokenizer)
    lambdas = torch.tensor([[0.5, 0.5]] * 3)
    reference = torch.zeros(batch["response_mask"].shape)
    results = []
    for layout in (None, LayoutSettings("shared_prefix", 64, tiny_tokenizer.pad_token_id)):
        tiny_model.zero_grad()
        logps = response_logps(tiny_model, batch if layout is None else {**batch, "layout": layout})
        objective = compute_objective(LossConfig(beta=1.0), logps, reference, batch, lambdas, ["a", "b"])
        objective.loss.backward()
        results.append((objective.loss.detach(), [p.grad.clone() for p in tiny_model.parameters()]))
    (loss_padded, grads_padded), (loss_packed, grads_packed) = results
    torch.testing.assert_close(loss_packed, loss_padded, rtol=1e-5, atol=1e-6)
    for packed, padded in zip(grads_packed, grads_padded):
        torch.testing.assert_close(packed, padded, rtol=1e-4, atol=1e-6)


def test_the_scorer_runs_the_lm_head_only_where_a_response_token_is_predicted(tiny_model, tiny_tokenizer):
    batch = varied_batch(tiny_tokenizer)
    seen = []
    handle = tiny_model.get_output_embeddings().register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    try:
        with torch.no_grad():
            logps = response_logps(tiny_model, batch)
    finally:
        handle.remove()
    assert sum(seen) == int(logps.tokens.sum()) < batch["input_ids"].numel()


def test_lora_reference_mode_and_eager_attention_pack_the_same(tiny_pretrained, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    from lambda_dpo.modeling import reference_mode

    batch = varied_batch(tiny_tokenizer)
    packed = {**batch, "layout": LayoutSettings("shared_prefix", 64, tiny_tokenizer.pad_token_id)}
    eager = AutoModelForCausalLM.from_pretrained(tiny_pretrained, dtype=torch.float32, attn_implementation="eager")
    lora = add_lora(AutoModelForCausalLM.from_pretrained(tiny_pretrained, dtype=torch.float32), LoraConfig(r=4, dropout=0.0))
    for model in (eager, lora):
        with reference_mode(model):
            torch.testing.assert_close(response_logps(model, packed).sum, response_logps(model, batch).sum, rtol=1e-5, atol=1e-5)
    assert isinstance(ResponseScorer(lora).plain_head, bool) and ResponseScorer(lora).plain_head


@pytest.mark.parametrize("key_heads", [4, 2])  # multi-head and grouped-query attention
def test_tree_attention_equals_attention_under_the_dense_tree_mask(key_heads):
    import torch.nn.functional as F

    from lambda_dpo.tree_attention import TreePlan, tree_attention

    batch = batch_of(encoded(0, 3, [2, 4]), encoded(1, 2, [1, 1, 3], start=40), encoded(2, 6, [5, 2], start=70))
    layout = shared_prefix_layout(batch, max_tokens_per_row=20, pad_token_id=0)
    rows, length = layout.input_ids.shape
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(rows, 4, length, 8, generator=generator, requires_grad=True)
    key, value = (torch.randn(rows, key_heads, length, 8, generator=generator, requires_grad=True) for _ in range(2))
    module = torch.nn.Module().eval()
    ours, _ = tree_attention(module, query, key, value, None, scaling=8**-0.5, tree_plan=TreePlan.of(layout))
    repeat = 4 // key_heads
    dense = F.scaled_dot_product_attention(query, key.repeat_interleave(repeat, 1), value.repeat_interleave(repeat, 1),
                                           attn_mask=attends(layout.segments, layout.branches)[:, None]).transpose(1, 2)
    real = layout.segments != PADDING  # padding positions are never read; ours leaves them at zero
    torch.testing.assert_close(ours[real], dense[real], rtol=1e-5, atol=1e-6)
    (ours[real].sum() + dense[real].pow(2).sum() * 0).backward()
    assert torch.isfinite(query.grad).all() and torch.isfinite(key.grad).all()



@pytest.mark.parametrize("precision", PRECISIONS)
def test_packed_and_padded_agree_in_bf16_within_the_derived_tolerance(tiny_model, tiny_tokenizer, precision):
    """bf16 autocast over fp32 weights is what a GPU runs for a `model.dtype: float32` config: the
    packed path once failed there (its attention's output buffer took the fp32 query's dtype, while
    SDPA's output was bf16)."""
    tolerance = assert_layouts_agree_in_bf16(tiny_model, varied_batch(tiny_tokenizer), tiny_tokenizer.pad_token_id, precision)
    assert 0 < tolerance < 0.01  # random weights: small logits, small rounding errors
