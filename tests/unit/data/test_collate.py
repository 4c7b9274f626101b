import math

import numpy as np
import pytest
import torch

from lambda_dpo.data import IGNORE_INDEX, ListwiseCollator, ListwiseExample, encode_examples, render_prompt
from lambda_dpo.data.encoding import encode_with_report

NAN = math.nan


def example(key, prompt, responses, ratings):
    return ListwiseExample(key, f"t[{key}]", prompt, tuple(responses), np.asarray(ratings, dtype=float))


@pytest.fixture
def examples():
    return [
        example(0, "Explain photosynthesis in one sentence.",
                ["Plants turn light into sugar.", "I am not sure.", "The quick brown fox.", "Light, water and carbon dioxide."],
                [[5, 1, 2, 4], [5, 3, NAN, 4], [4, 2, 1, 5], [5, 2, 1, 5]]),
        example(1, [{"role": "user", "content": "Write a haiku about autumn."}],
                ["Leaves falling slowly.", "Forty two."],
                [[4, 1], [4, 4], [5, 1], [NAN, NAN]]),
    ]


class CountingTokenizer:
    """Wraps a tokenizer and counts every text it encodes."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.texts = []

    def __call__(self, texts, **kwargs):
        self.texts.extend(texts)
        return self._tokenizer(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def test_each_response_is_tokenised_once(tiny_tokenizer, examples):
    counting = CountingTokenizer(tiny_tokenizer)
    encode_examples(examples, counting, max_prompt_length=64, max_length=128)
    responses = [r for e in examples for r in e.responses]
    prompts = [render_prompt(e.prompt, tiny_tokenizer) for e in examples]
    frame_probes = [render_prompt(text, tiny_tokenizer) for text in ("a", "Zq z")]  # the template's extent, measured once
    assert sorted(counting.texts) == sorted(responses + prompts + frame_probes)


def test_batch_holds_b_times_n_sequences_not_b_times_m_times_n(tiny_tokenizer, examples):
    encoded = encode_examples(examples, tiny_tokenizer, max_prompt_length=64, max_length=128)
    batch = ListwiseCollator(tiny_tokenizer.pad_token_id)(encoded)
    B, N, m = 2, 4, 4
    assert batch["input_ids"].shape[0] == B * N
    assert batch["attention_mask"].shape == batch["labels"].shape == batch["input_ids"].shape
    assert batch["targets"].shape == batch["target_mask"].shape == batch["ratings"].shape == (B, m, N)
    assert batch["response_mask"].tolist() == [[True] * 4, [True, True, False, False]]
    assert batch["example_keys"].tolist() == [0, 1]


def test_rows_are_prompt_then_response_with_only_response_labelled(tiny_tokenizer, examples):
    encoded = encode_examples(examples, tiny_tokenizer, max_prompt_length=64, max_length=128)
    batch = ListwiseCollator(tiny_tokenizer.pad_token_id)(encoded)
    N = 4
    for b, item in enumerate(encoded):
        for i, response_ids in enumerate(item.response_ids):
            row = b * N + i
            length = len(item.prompt_ids) + len(response_ids)
            assert batch["input_ids"][row, : len(item.prompt_ids)].tolist() == list(item.prompt_ids)
            labelled = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX].tolist()
            assert labelled == list(response_ids) and labelled[-1] == tiny_tokenizer.eos_token_id
            assert batch["attention_mask"][row].sum().item() == length
            assert batch["response_lengths"][b, i].item() == len(response_ids)
    # A padded slot holds the prompt alone, attendable, with nothing to score.
    padded_row = 1 * N + 3
    assert batch["attention_mask"][padded_row].sum().item() == len(encoded[1].prompt_ids)
    assert torch.all(batch["labels"][padded_row] == IGNORE_INDEX)
    assert batch["response_lengths"][1, 3].item() == 0


def test_chat_template_renders_the_prompt(tiny_tokenizer, examples):
    text = render_prompt(examples[1].prompt, tiny_tokenizer)
    assert text == "<s><|user|>Write a haiku about autumn.</s><|assistant|>"
    encoded = encode_examples(examples[1:], tiny_tokenizer, max_prompt_length=64, max_length=128)
    assert tiny_tokenizer.decode(list(encoded[0].prompt_ids)) == text


def test_targets_respect_na_and_padding(tiny_tokenizer, examples):
    encoded = encode_examples(examples, tiny_tokenizer, max_prompt_length=64, max_length=128)
    batch = ListwiseCollator(tiny_tokenizer.pad_token_id, target_temperature=1.0)(encoded)
    assert batch["target_mask"][0, 1].tolist() == [True, True, False, True]  # N/A left out
    assert batch["target_mask"][1, 0].tolist() == [True, True, False, False]  # padding left out
    assert not batch["target_mask"][1, 3].any()  # dimension entirely N/A
    sums = batch["targets"].sum(dim=-1)
    assert torch.allclose(sums[batch["target_mask"].any(dim=-1)], torch.tensor(1.0))


def test_truncation_keeps_the_template_head_and_the_end_of_the_prompt_and_fits_max_length(tiny_tokenizer, examples):
    encoded, report = encode_with_report(examples, tiny_tokenizer, max_prompt_length=6, max_length=10)
    full = encode_examples(examples, tiny_tokenizer, max_prompt_length=64, max_length=128)
    head = 2  # "<s><|user|>": the template's own tokens are never cut
    assert encoded[0].prompt_ids == full[0].prompt_ids[:head] + full[0].prompt_ids[-(6 - head):]
    assert all(len(encoded[0].prompt_ids) + len(r) <= 10 for r in encoded[0].response_ids)
    assert report.prompts == len(examples) and report.prompts_cut == sum(len(e.prompt_ids) > 6 for e in full)
    assert report.responses_cut == sum(len(e.prompt_ids[:6]) + len(r) > 10 for e in full for r in e.response_ids)
    assert "lost the start of their text to data.max_prompt_length" in report.summary("train")
    with pytest.raises(ValueError, match="must be larger than max_prompt_length"):
        encode_examples(examples, tiny_tokenizer, max_prompt_length=8, max_length=8)


def test_a_prompt_budget_that_cannot_hold_the_template_is_an_error(tiny_tokenizer, examples):
    with pytest.raises(ValueError, match=r"data.max_prompt_length is 4, but the chat template alone takes 4 tokens"):
        encode_examples(examples, tiny_tokenizer, max_prompt_length=4, max_length=10)
    assert encode_with_report(examples, tiny_tokenizer, max_prompt_length=64, max_length=128)[1].summary("train") is None
