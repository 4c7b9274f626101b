"""Shared fixtures. Nothing in the suite may reach for a model or data hub."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _private_hf_cache(tmp_path_factory):
    """Keep `datasets` caches of test files out of the user's home."""
    cache = tmp_path_factory.mktemp("hf-cache")
    previous = os.environ.get("HF_DATASETS_CACHE")
    os.environ["HF_DATASETS_CACHE"] = str(cache)
    yield
    if previous is None:
        os.environ.pop("HF_DATASETS_CACHE", None)
    else:
        os.environ["HF_DATASETS_CACHE"] = previous


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from lambda_dpo.tiny import train_tokenizer

    corpus = [
        "The quick brown fox jumps over the lazy dog.",
        "Explain photosynthesis in one sentence.",
        "Plants turn light, water and carbon dioxide into sugar and oxygen.",
        "I am not sure, but I think the answer is forty two.",
        "Write a haiku about autumn leaves falling slowly.",
    ] * 20
    return train_tokenizer(corpus, vocab_size=400)


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory, tiny_tokenizer):
    """An ordinary pretrained-model directory (weights, tokenizer with a chat template), made here:
    the tiny Llama with random weights, saved as a hub download would be."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    directory = tmp_path_factory.mktemp("tiny-pretrained")
    config = AutoConfig.from_pretrained("configs/models/tiny-llama")
    config.vocab_size = len(tiny_tokenizer)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tiny_tokenizer.save_pretrained(directory)
    return directory
