"""One run per run directory: ``RUN_DIR/.lock`` names the process that owns it.

Two ``lambda-dpo train`` processes writing one ``output_dir`` would interleave checkpoints, logs
and reference caches. The second fails at once; a lock left by a process that no longer runs on
this host is stale and taken over with a warning.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from lambda_dpo.console import logger

LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """The run directory is in use by another process."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _owner(path: Path) -> dict:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _is_stale(owner: dict) -> bool:
    """A lock whose process is known to be gone: same host, pid not running (or no owner recorded)."""
    if not isinstance(owner.get("pid"), int):
        return True
    return owner.get("host") == socket.gethostname() and not _alive(owner["pid"])


def _in_use(run_dir, owner: dict, path: Path) -> str:
    return (f"{run_dir} is in use by another run (pid {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}); "
            f"wait for it, or choose another output_dir (if that process is gone, delete {path})")


def check_unlocked(run_dir: str | Path) -> None:
    """RunLockedError if a live process holds ``run_dir`` now (``--dry-run`` asks before any run)."""
    path = Path(run_dir) / LOCK_FILE
    if path.exists() and not _is_stale(owner := _owner(path)):
        raise RunLockedError(_in_use(run_dir, owner, path))


@contextlib.contextmanager
def run_lock(run_dir: str | Path):
    """Hold ``run_dir``'s lock for the ``with`` block; RunLockedError if a live process holds it."""
    path = Path(run_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = _owner(path)
            if not _is_stale(owner):
                raise RunLockedError(_in_use(run_dir, owner, path)) from None
            logger.warning(f"{path}: taking over a stale lock of pid {owner.get('pid')} on {owner.get('host')}, which no longer runs")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w") as handle:
            json.dump(me, handle)
        break
    else:
        raise RunLockedError(f"{run_dir}: could not take {path}")
    try:
        yield path
    finally:
        if _owner(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
