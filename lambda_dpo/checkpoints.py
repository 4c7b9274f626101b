"""Checkpoints that a resume can trust: written whole or not at all, verified before use, never
rotated away while they are the last good one, and loaded without running pickled code.

A checkpoint is ``RUN_DIR/checkpoints/step-N/``: the weights (safetensors), ``training_state.pt``
(optimizer, learning-rate schedule and RNG state: tensors and plain containers only), ``config.yaml`` and,
written last, ``manifest.json`` (each file's size and SHA-256, and whether every weight was
finite). It is written as ``step-N.partial`` and renamed, so a kill mid-save leaves no
``step-N``. See docs/checkpoints.md.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from lambda_dpo.console import logger

TRAINING_STATE = "training_state.pt"
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names it and what is wrong."""


def checkpoint_step(name: str) -> int:
    """N of a ``step-N`` checkpoint directory name, -1 for any other name (``step-N.partial``)."""
    prefix, _, number = name.rpartition("-")
    return int(number) if prefix == "step" and number.isdigit() else -1


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first; a ``step-N.partial`` left by a kill mid-save is not one."""
    found = [p for p in (Path(run_dir) / "checkpoints").glob("step-*") if checkpoint_step(p.name) >= 0 and (p / TRAINING_STATE).exists()]
    return sorted(found, key=lambda p: checkpoint_step(p.name))


def is_checkpoint(path: Path) -> bool:
    path = Path(path)
    return checkpoint_step(path.name) >= 0 and path.parent.name == "checkpoints" and (path / TRAINING_STATE).is_file()


def require_checkpoint(path: str | Path) -> Path:
    """``path`` if it is a checkpoint directory (``…/checkpoints/step-N`` with its training state),
    else a CheckpointError that says what to pass; nothing is read or written before this check."""
    path = Path(path)
    if is_checkpoint(path):
        return path
    hint = ""
    if (path / "checkpoints").is_dir():
        newest = latest_checkpoint(path)
        hint = f"; it is a run directory: pass one of its checkpoints, e.g. {newest}" if newest else "; it is a run directory with no checkpoint yet"
    raise CheckpointError(f"{path} is not a checkpoint directory (RUN_DIR/checkpoints/step-N){hint}")


# ----------------------------------------------------------------------------- RNG state


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) RNG states as tensors, ints and lists: what ``weights_only``
    loading accepts (NumPy's own state holds an ndarray, which it refuses)."""
    kind, key, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(position), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["key"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- saving


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_are_finite(model) -> bool:
    """Whether every weight the checkpoint saves is finite (the trainable ones: the adapter under
    LoRA, every weight in a full fine-tune)."""
    trained = [p for p in model.parameters() if p.requires_grad] or list(model.parameters())
    return all(bool(torch.isfinite(p).all()) for p in trained)


def write_manifest(directory: Path, *, step: int, finite: bool) -> None:
    files = {p.relative_to(directory).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (directory / MANIFEST).write_text(json.dumps({"step": step, "finite_weights": finite, "files": files}, indent=1))


def save_checkpoint(run_dir: Path, step: int, model, training_state: dict, write_config, *, keep: int) -> Path:
    """Write ``step-N`` (weights, ``training_state``, the config through ``write_config(dir)``, the
    manifest last) as ``step-N.partial``, rename it, verify it, and only then remove older
    checkpoints beyond the newest ``keep`` — never the newest one whose weights were finite."""
    final = Path(run_dir) / "checkpoints" / f"step-{step}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    torch.save({"step": step, **training_state}, partial / TRAINING_STATE)
    write_config(partial)
    finite = weights_are_finite(model)
    write_manifest(partial, step=step, finite=finite)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    if not finite:
        logger.warning(f"{final}: the weights hold non-finite values; the newest finite checkpoint is kept")
    problem = files_problem(final)
    if problem is not None:  # the disk did not keep what was written: remove nothing older
        logger.warning(f"{final} does not verify ({problem}); older checkpoints are kept")
        return final
    rotate_checkpoints(Path(run_dir), keep)
    return final


def rotate_checkpoints(run_dir: Path, keep: int) -> None:
    """Remove checkpoints older than the newest ``keep``, except the newest good one (complete,
    verified, finite weights): a run that went non-finite keeps the checkpoint to go back to."""
    found = checkpoint_dirs(run_dir)
    good = next((path for path in reversed(found) if checkpoint_problem(path) is None), None)
    for old in found[:-keep]:
        if old != good:
            shutil.rmtree(old)


# ----------------------------------------------------------------------------- verifying and loading


def checkpoint_problem(path: Path) -> str | None:
    """What makes checkpoint ``path`` unfit to resume from (:func:`files_problem`, or weights that
    were non-finite when saved), or None when it is good."""
    problem = files_problem(path)
    if problem is None and not _read_manifest(Path(path)).get("finite_weights", True):
        return "its weights hold non-finite values"
    return problem


def files_problem(path: Path) -> str | None:
    """A file of checkpoint ``path`` missing, or a size or hash that does not match its manifest;
    None when every file is as written. A checkpoint written before manifests existed is trusted
    as it is."""
    path = Path(path)
    if not (path / TRAINING_STATE).is_file():
        return f"no {TRAINING_STATE}"
    if not (path / MANIFEST).is_file():
        return None
    files = _read_manifest(path).get("files")
    if not isinstance(files, dict):
        return f"{MANIFEST} is unreadable"
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected["bytes"]:
            return f"{name} has {file.stat().st_size} bytes, the manifest says {expected['bytes']}"
        if _sha256(file) != expected["sha256"]:
            return f"{name} does not match its SHA-256 in the manifest"
    return None


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def latest_checkpoint(run_dir: Path, *, verify: bool = True) -> Path | None:
    """The newest checkpoint of ``run_dir`` that verifies (:func:`checkpoint_problem`); each newer
    damaged one is named in a warning and skipped. ``verify=False``: the newest complete one."""
    found = checkpoint_dirs(Path(run_dir))
    if not verify:
        return found[-1] if found else None
    for path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        logger.warning(f"checkpoint {path} is damaged ({problem}); falling back to an older one")
    return None


def load_training_state(checkpoint: Path) -> dict:
    """``training_state.pt`` of ``checkpoint``, loaded with ``weights_only=True``: tensors and plain
    containers only, so a checkpoint from someone else cannot run code when it is resumed."""
    path = Path(checkpoint) / TRAINING_STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError (or RuntimeError) for anything else
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: refused to load: it holds more than tensors and plain containers "
                              f"(or is damaged), and loading it could run code ({first})") from None
