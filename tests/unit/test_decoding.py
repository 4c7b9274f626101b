"""Greedy decoding with finished rows dropped gives generate()'s tokens (lambda_dpo/decoding.py)."""

import collections

import pytest
import torch

from lambda_dpo.decoding import generate_batch, greedy_generations, length_batches

PROMPTS = [
    "Explain photosynthesis in one sentence.",
    "The quick brown fox",
    "Write a haiku about autumn leaves falling slowly, and then explain why it is a haiku.",
    "I am not sure",
    "Plants turn light, water and carbon dioxide into sugar and oxygen. Why?",
    "dog",
]


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained("configs/models/tiny-llama")
    config.vocab_size = len(tiny_tokenizer)
    config.initializer_range = 0.3  # large weights: each token depends on the whole context, so a row given another's cache answers differently
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tiny_tokenizer


def ending_token(model, tokenizer, max_new_tokens: int) -> str:
    """A token that greedy decoding emits for several prompts at different steps and never for
    some: made the end-of-sequence token, it ends rows of one batch at different steps."""
    first_at = collections.defaultdict(dict)  # token → {prompt: the step it is first emitted}
    for index, prompt in enumerate(PROMPTS):
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        tokens = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=None)[0, ids["input_ids"].shape[1]:]
        for step, token in enumerate(tokens.tolist()):
            first_at[token].setdefault(index, step)
    spread = lambda steps: (len(set(steps.values())), len(steps) < len(PROMPTS))  # noqa: E731
    return tokenizer.convert_ids_to_tokens(max(first_at, key=lambda token: spread(first_at[token])))


def one_by_one(model, tokenizer, max_new_tokens):
    return [generate_batch(model, tokenizer, [prompt], max_new_tokens=max_new_tokens)[0] for prompt in PROMPTS]


def test_length_batches_group_the_longest_first():
    assert length_batches([3, 9, 1, 7, 5], 2) == [[1, 3], [4, 0], [2]]


def test_greedy_generations_match_generate_token_for_token(tiny):
    model, tokenizer = tiny
    expected = one_by_one(model, tokenizer, 10)
    for batch_size in (1, 4, len(PROMPTS)):
        assert greedy_generations(model, tokenizer, PROMPTS, max_new_tokens=10, batch_size=batch_size) == expected


def test_rows_that_finish_early_leave_the_batch_with_the_same_tokens(tiny):
    model, tokenizer = tiny
    eos = tokenizer.eos_token
    tokenizer.eos_token = ending_token(model, tokenizer, 16)
    try:
        expected = one_by_one(model, tokenizer, 16)
        ends = [g.new_tokens for g in expected if g.finished]
        assert len(set(ends)) >= 3 and not all(g.finished for g in expected)  # rows end at different steps
        assert greedy_generations(model, tokenizer, PROMPTS, max_new_tokens=16, batch_size=len(PROMPTS)) == expected
        assert generate_batch(model, tokenizer, PROMPTS, max_new_tokens=16) == expected  # and generate()'s own padded batch agrees
    finally:
        tokenizer.eos_token = eos


def test_a_lora_policy_decodes_merged_to_the_same_tokens_and_is_left_unmerged(tiny):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny
    import copy

    policy = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    torch.manual_seed(1)
    for name, parameter in policy.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.05)
    before = {name: p.clone() for name, p in policy.named_parameters()}
    expected = [generate_batch(policy, tokenizer, [prompt], max_new_tokens=10)[0] for prompt in PROMPTS]
    assert expected != one_by_one(model, tokenizer, 10)  # the adapter changes the answers
    policy.train()
    assert greedy_generations(policy, tokenizer, PROMPTS, max_new_tokens=10, batch_size=3) == expected
    assert policy.training and all(torch.equal(p, before[name]) for name, p in policy.named_parameters())
