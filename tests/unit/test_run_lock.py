"""One run per run directory."""

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from lambda_dpo.run_lock import LOCK_FILE, RunLockedError, run_lock


def test_a_second_run_in_the_same_directory_fails_at_once_naming_the_owner(tmp_path):
    with run_lock(tmp_path / "run") as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match=rf"in use by another run \(pid {os.getpid()} on {socket.gethostname()} since"):
            with run_lock(tmp_path / "run"):
                pass
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released when the run ends
    with run_lock(tmp_path / "run"):
        pass


def test_a_lock_left_by_a_process_that_is_gone_is_taken_over(tmp_path, caplog):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": int(gone), "host": socket.gethostname(), "since": "earlier"}))
    with caplog.at_level(logging.WARNING, logger="lambda_dpo"), run_lock(tmp_path):
        pass
    assert f"stale lock of pid {gone}" in caplog.text


def test_a_lock_held_on_another_host_is_respected(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "earlier"}))
    with pytest.raises(RunLockedError, match=f"if that process is gone, delete {tmp_path / LOCK_FILE}"):
        with run_lock(tmp_path):
            pass


def test_the_train_command_refuses_a_directory_in_use(tmp_path, capsys):
    from lambda_dpo.cli import main

    with run_lock(tmp_path / "run"):
        assert main(["train", "configs/train/tiny.yaml", f"output_dir={tmp_path / 'run'}"]) == 2
    assert "is in use by another run" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []  # nothing written
