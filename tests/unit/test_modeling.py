import pytest
import torch

from lambda_dpo.data.collate import IGNORE_INDEX
from lambda_dpo.modeling import ReferenceCache, sequence_logps


def naive_sequence_logps(logits, labels):
    """The textbook way: a full log-softmax, then gather the shifted labels."""
    logps = logits.float().log_softmax(-1)[:, :-1]
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    picked = logps.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
    return (picked * mask).sum(-1), mask.sum(-1)


@pytest.fixture
def logits_and_labels():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 9, 37, generator=generator, dtype=torch.float64).float()
    labels = torch.randint(0, 37, (5, 9), generator=generator)
    labels[:, :3] = IGNORE_INDEX  # prompt
    labels[1, 6:] = IGNORE_INDEX  # right padding
    labels[4, 3:] = IGNORE_INDEX  # a padded slot: prompt only, no response
    return logits, labels


@pytest.mark.parametrize("chunk_size", [1, 4, 1024])
def test_sequence_logps_match_full_log_softmax_and_skip_prompt_and_padding(logits_and_labels, chunk_size):
    logits, labels = logits_and_labels
    sums, counts = sequence_logps(logits, labels, chunk_size=chunk_size)
    expected_sums, expected_counts = naive_sequence_logps(logits, labels)
    torch.testing.assert_close(sums, expected_sums, atol=1e-5, rtol=0)
    assert counts.tolist() == expected_counts.tolist() == [6, 3, 6, 6, 0]
    assert sums[4] == 0


def test_sequence_logps_gradient_matches_naive(logits_and_labels):
    logits, labels = logits_and_labels
    ours = logits.clone().requires_grad_()
    theirs = logits.clone().requires_grad_()
    sequence_logps(ours, labels, chunk_size=4)[0].sum().backward()
    naive_sequence_logps(theirs, labels)[0].sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-6, rtol=0)


def test_bf16_logits_are_scored_in_fp32_with_recomputed_chunks(logits_and_labels):
    logits, labels = logits_and_labels
    low = logits.bfloat16().requires_grad_()
    sums, _ = sequence_logps(low, labels, chunk_size=4)
    assert sums.dtype == torch.float32
    expected, _ = naive_sequence_logps(low.detach().float(), labels)
    torch.testing.assert_close(sums, expected, atol=1e-4, rtol=0)
    sums.sum().backward()
    reference = low.detach().float().requires_grad_()
    naive_sequence_logps(reference, labels)[0].sum().backward()
    torch.testing.assert_close(low.grad.float(), reference.grad, atol=1e-2, rtol=0)


def test_reference_cache_lookup_and_disk_round_trip(tmp_path):
    cache = ReferenceCache(tmp_path / "ref.pt", key="k1")
    cache.values = torch.tensor([[[-1.0, -0.5], [-2.0, -1.0], [float("nan")] * 2]])
    torch.save({"key": "k1", "values": cache.values}, cache.path)
    assert cache.lookup(torch.tensor([0]), 3, "mean").tolist() == [[-0.5, -1.0, 0.0]]
    assert cache.lookup(torch.tensor([0]), 2, "sum").tolist() == [[-1.0, -2.0]]
    again = ReferenceCache(tmp_path / "ref.pt", key="k1")
    assert again.load() and torch.equal(again.values.nan_to_num(), cache.values.nan_to_num())
    assert not ReferenceCache(tmp_path / "ref.pt", key="other data").load()
    with pytest.raises(RuntimeError, match="empty"):
        ReferenceCache(None, "x").lookup(torch.tensor([0]), 1, "mean")


@pytest.mark.parametrize("damage", [lambda raw: raw[: len(raw) // 2], lambda raw: b"\x00" * len(raw)], ids=["truncated", "overwritten"])
def test_a_damaged_reference_cache_is_named_and_computed_again(tmp_path, caplog, damage):
    """A truncated reference_logps/train.pt used to make every resume fail with a message naming no file."""
    import logging

    batch = {
        "input_ids": torch.ones(1, 4, dtype=torch.long),
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
        "labels": torch.tensor([[-100, -100, 3, 4]]),
        "response_mask": torch.tensor([[True]]),
        "example_keys": torch.tensor([0]),
    }
    cache = ReferenceCache(tmp_path / "ref.pt", key="k")
    cache.fill(ZeroModel(), [batch], num_examples=1, num_slots=1, device=torch.device("cpu"))
    assert not (tmp_path / "ref.pt.partial").exists()  # written whole, then renamed
    cache.path.write_bytes(damage(cache.path.read_bytes()))
    again = ReferenceCache(tmp_path / "ref.pt", key="k")
    with caplog.at_level(logging.WARNING, logger="lambda_dpo"):
        again.fill(ZeroModel(), [batch], num_examples=1, num_slots=1, device=torch.device("cpu"))
    assert f"reference log-probs cache {cache.path} is damaged" in caplog.text
    assert again.forward_rows == 1 and torch.equal(again.values, cache.values)
    assert ReferenceCache(tmp_path / "ref.pt", key="k").load()  # the recomputed file reads back


class ZeroModel(torch.nn.Module):
    def forward(self, input_ids, attention_mask=None, use_cache=False, **kwargs):
        return type("Output", (), {"logits": torch.zeros(*input_ids.shape, 11)})()


def test_pad_token_from_config_then_eos_else_a_clear_error(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from lambda_dpo.modeling import ModelConfig, load_tokenizer

    vocab = {"<unk>": 0, "<|endoftext|>": 1, "a": 2, "b": 3}
    bare = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    bare.pre_tokenizer = pre_tokenizers.Whitespace()
    directory = tmp_path / "no-pad-no-eos"
    PreTrainedTokenizerFast(tokenizer_object=bare, unk_token="<unk>").save_pretrained(directory)

    with pytest.raises(ValueError, match="model.pad_token"):
        load_tokenizer(ModelConfig(name_or_path=str(directory)))
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(directory), pad_token="<|endoftext|>"), saved=tmp_path / "saved")
    assert tokenizer.pad_token_id == 1
    assert load_tokenizer(ModelConfig(name_or_path=str(directory)), saved=tmp_path / "saved").pad_token_id == 1  # the run's copy keeps it


def test_reference_cache_looks_up_the_slots_of_a_pairwise_batch():
    cache = ReferenceCache(None, key="k")
    cache.values = torch.tensor([[[-1.0, -0.1], [-2.0, -0.2], [-3.0, -0.3]], [[-4.0, -0.4], [-5.0, -0.5], [float("nan")] * 2]])
    slots = torch.tensor([[2, 0], [0, 1]])
    assert cache.lookup(torch.tensor([0, 1]), 2, "sum", slots=slots).tolist() == [[-3.0, -1.0], [-4.0, -5.0]]


class NanModel(torch.nn.Module):
    """Logits that are NaN for the second sequence of every batch."""

    def forward(self, input_ids, attention_mask=None, use_cache=False, **kwargs):
        logits = torch.zeros(*input_ids.shape, 11)
        logits[1] = float("nan")
        return type("Output", (), {"logits": logits})()


def test_the_reference_cache_refuses_non_finite_log_probs(tmp_path):
    batch = {
        "input_ids": torch.ones(2, 4, dtype=torch.long),
        "attention_mask": torch.ones(2, 4, dtype=torch.long),
        "labels": torch.tensor([[-100, -100, 3, 4], [-100, -100, 5, 6]]),
        "response_mask": torch.tensor([[True, True]]),
        "example_keys": torch.tensor([7]),
    }
    cache = ReferenceCache(tmp_path / "ref.pt", key="k")
    with pytest.raises(ValueError, match=r"non-finite log-probs for 1 responses \(examples \[7\]\)"):
        cache.fill(NanModel(), [batch], num_examples=8, num_slots=2, device=torch.device("cpu"))
    assert not cache.path.exists() and cache.values is None


def model_directory(tmp_path, *, weights: bool):
    import shutil

    directory = tmp_path / ("pretrained" if weights else "config-only")
    directory.mkdir()
    shutil.copy("configs/models/tiny-llama/config.json", directory)
    if weights:
        (directory / "model.safetensors").write_bytes(b"")  # only its presence is read here
    return str(directory)


def test_random_init_is_what_the_directory_allows_unless_set(tmp_path):
    from lambda_dpo.modeling import ModelConfig

    pretrained, bare = model_directory(tmp_path, weights=True), model_directory(tmp_path, weights=False)
    assert ModelConfig(name_or_path=bare).uses_random_init()  # nothing to load
    assert not ModelConfig(name_or_path=pretrained).uses_random_init()  # weights are loaded unless told otherwise
    assert ModelConfig(name_or_path=pretrained, random_init=True).uses_random_init()
    assert not ModelConfig(name_or_path="smollm2-135m-instruct").uses_random_init()
    with pytest.raises(ValueError, match="random_init is false, but .* no weights"):
        ModelConfig(name_or_path=bare, random_init=False).uses_random_init()
    with pytest.raises(ValueError, match="tokenizer: train builds a new vocabulary"):
        ModelConfig(name_or_path=pretrained, tokenizer="train").uses_random_init()
    assert ModelConfig(name_or_path=pretrained, tokenizer="train", random_init=True).uses_random_init()


def test_a_tokenizer_larger_than_the_pretrained_embeddings_is_an_error(tmp_path, tiny_tokenizer):
    import json

    from lambda_dpo.modeling import ModelConfig, check_vocabulary

    pretrained = model_directory(tmp_path, weights=True)
    rows = json.loads((tmp_path / "pretrained" / "config.json").read_text())["vocab_size"]
    assert len(tiny_tokenizer) <= rows
    check_vocabulary(ModelConfig(name_or_path=pretrained), tiny_tokenizer)
    config = json.loads((tmp_path / "pretrained" / "config.json").read_text())
    (tmp_path / "pretrained" / "config.json").write_text(json.dumps({**config, "vocab_size": 100}))
    with pytest.raises(ValueError, match=f"has {len(tiny_tokenizer)} tokens, but the embeddings of .* have 100 rows"):
        check_vocabulary(ModelConfig(name_or_path=pretrained), tiny_tokenizer)
    check_vocabulary(ModelConfig(name_or_path=pretrained, random_init=True), tiny_tokenizer)  # random init sizes the table to it
