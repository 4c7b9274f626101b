import numpy as np
import pytest

from lambda_dpo.conditioning import PromptConditioner, lambda_preamble, preamble_corpus, steerability
from lambda_dpo.data.encoding import encode_examples
from lambda_dpo.data.records import ListwiseExample

DIMENSIONS = ["helpfulness", "honesty"]


def example(key, prompt):
    return ListwiseExample(key, f"r{key}", prompt, ("Fine.", "No."), np.array([[5.0, 1.0], [2.0, 4.0]]))


def test_preamble_has_a_fixed_format_with_numbers_and_a_twenty_word_mix():
    text = lambda_preamble([0.7, 0.3], DIMENSIONS)
    assert text == "preference weights: helpfulness=0.70 honesty=0.30 | mix: " + " ".join(["helpfulness"] * 14 + ["honesty"] * 6)
    mix = lambda_preamble([0.33, 0.33, 0.34], ["a", "b", "c"]).split("mix: ")[1].split()
    assert len(mix) == 20 and [mix.count(name) for name in "abc"] == [7, 6, 7]  # largest remainders, ties by order


def test_conditioned_prompts_carry_lambda_as_the_system_message_and_keep_responses(tiny_tokenizer):
    examples = [example(0, "Explain photosynthesis in one sentence."), example(1, "Write a haiku.")]
    encoded = encode_examples(examples, tiny_tokenizer, max_prompt_length=64, max_length=128)
    conditioner = PromptConditioner(examples, tiny_tokenizer, DIMENSIONS, max_prompt_length=64)
    conditioned = conditioner(encoded, np.array([[1.0, 0.0], [0.25, 0.75]]))
    text = tiny_tokenizer.decode(conditioned[0].prompt_ids)
    assert text.startswith("<s><|system|>preference weights: helpfulness=1.00 honesty=0.00 | mix: helpfulness")
    assert "</s><|user|>Explain photosynthesis" in text
    assert "helpfulness=0.25 honesty=0.75" in tiny_tokenizer.decode(conditioned[1].prompt_ids)
    assert [c.response_ids for c in conditioned] == [e.response_ids for e in encoded]  # responses not re-encoded
    assert encoded[0].prompt_ids != conditioned[0].prompt_ids  # the plain prompt (the reference's) is untouched


def test_a_long_prompt_keeps_its_preamble_and_the_same_content_as_its_plain_form(tiny_tokenizer):
    long = example(0, "The quick brown fox jumps over the lazy dog. " * 10 + "Final question?")
    encoded = encode_examples([long], tiny_tokenizer, max_prompt_length=16, max_length=40)
    conditioned = PromptConditioner([long], tiny_tokenizer, DIMENSIONS, max_prompt_length=16)(encoded, np.array([[0.5, 0.5]]))[0]
    text, plain = tiny_tokenizer.decode(conditioned.prompt_ids), tiny_tokenizer.decode(encoded[0].prompt_ids)
    assert "helpfulness=0.50 honesty=0.50" in text and text.endswith("<|assistant|>") and "Final question?" in text
    assert "The quick brown fox jumps over the lazy dog. The quick" not in text
    assert plain.startswith("<s><|user|>") and len(encoded[0].prompt_ids) == 16  # the template's head is kept, the content cut
    assert text.split("<|user|>")[1] == plain.split("<|user|>")[1]  # the preamble comes on top of the plain budget


def test_steerability_scalar():
    assert steerability(np.eye(4)) == pytest.approx(1.0)
    assert steerability(np.tile([0.5, 0.6, 0.7, 0.8], (4, 1))) == 0.0  # a model that ignores λ
    accuracy = np.array([[0.9, 0.2], [0.3, 0.8]])
    assert steerability(accuracy) == pytest.approx(((0.9 - 0.3) + (0.8 - 0.2)) / 2)
    with pytest.raises(ValueError, match="matrix"):
        steerability(np.ones((2, 3)))


def test_the_preamble_corpus_covers_every_vertex_then_dirichlet_draws():
    texts = list(preamble_corpus(["a", "b", "c"], seed=0, count=5))
    assert len(texts) == 8
    assert texts[0].startswith("preference weights: a=1.00 b=0.00 c=0.00")
    assert texts == list(preamble_corpus(["a", "b", "c"], seed=0, count=5))


# SmolLM2-135M-Instruct's template: a default system message when the messages have none.
DEFAULT_SYSTEM_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|system|>You are a helpful assistant.</s>' }}{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '</s>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def test_the_preamble_joins_the_templates_default_system_prompt_or_the_prompts_own(tiny_tokenizer):
    import copy

    from lambda_dpo.conditioning import conditioned_prompt
    from lambda_dpo.data.encoding import default_system_prompt

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = DEFAULT_SYSTEM_TEMPLATE
    assert default_system_prompt(tokenizer) == "You are a helpful assistant."
    assert default_system_prompt(tiny_tokenizer) is None
    preamble = lambda_preamble([0.5, 0.5], DIMENSIONS)
    text = conditioned_prompt("Hi.", [0.5, 0.5], DIMENSIONS, tokenizer)
    assert text == f"<|system|>You are a helpful assistant.\n\n{preamble}</s><|user|>Hi.</s><|assistant|>"
    own = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hi."}]
    assert conditioned_prompt(own, [0.5, 0.5], DIMENSIONS, tokenizer).startswith(f"<|system|>Answer in French.\n\n{preamble}</s>")
    assert conditioned_prompt("Hi.", [0.5, 0.5], DIMENSIONS, tiny_tokenizer).startswith(f"<s><|system|>{preamble}</s>")


def test_a_numbers_preamble_spells_lambda_without_the_mix():
    assert lambda_preamble([0.7, 0.3], DIMENSIONS, "numbers") == "preference weights: helpfulness=0.70 honesty=0.30"
    assert lambda_preamble([0.7, 0.3], DIMENSIONS).startswith(lambda_preamble([0.7, 0.3], DIMENSIONS, "numbers") + " | mix: ")
    with pytest.raises(ValueError, match="preamble must be one of numbers\\+mix, numbers; got 'words'"):
        lambda_preamble([0.7, 0.3], DIMENSIONS, "words")


def test_the_conditioner_and_the_corpus_use_the_runs_preamble(tiny_tokenizer):
    examples = [example(0, "Is salt a mineral?")]
    encoded = encode_examples(examples, tiny_tokenizer, max_prompt_length=64, max_length=96)
    conditioner = PromptConditioner(examples, tiny_tokenizer, DIMENSIONS, max_prompt_length=64, preamble="numbers")
    text = tiny_tokenizer.decode(conditioner(encoded, np.array([[0.5, 0.5]]))[0].prompt_ids)
    assert "helpfulness=0.50 honesty=0.50" in text and "mix:" not in text
    assert all("mix:" not in line for line in preamble_corpus(DIMENSIONS, seed=0, count=3, preamble="numbers"))


def test_a_train_config_names_a_bad_preamble():
    from lambda_dpo.train_config import load_train_config

    assert load_train_config("configs/train/tiny-conditioned.yaml", ["preamble=numbers"]).preamble == "numbers"
    with pytest.raises(ValueError, match="preamble must be one of numbers\\+mix, numbers; got 'mixed'"):
        load_train_config("configs/train/tiny-conditioned.yaml", ["preamble=mixed"])
