"""`ray job submit` end to end: a Ray head on loopback (private ports and temp dir), the tiny sweep
submitted through cluster/submit.sh exactly as a user would, and only that head stopped, by PID."""

from __future__ import annotations

import contextlib
import os
import re
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

pytestmark = pytest.mark.integration

VENV_BIN = Path(sys.executable).parent
MICRO = ["train.data.source=synthetic:400", "train.optim.max_steps=30", "train.sft.steps=10", "train.save_every=10", "searcher.num_trials=2"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes_of(temp_dir: str, gcs_port: int) -> list[psutil.Process]:
    """The head's processes: those naming its temp dir (GCS, raylet, dashboard, monitors) or its
    GCS address (the client server), and every descendant of theirs (agents, workers)."""
    roots = []
    for process in psutil.process_iter(["cmdline"]):
        arguments = process.info["cmdline"] or ()
        if any(temp_dir in part or part.endswith(f":{gcs_port}") for part in arguments):
            roots.append(process)
    found = {process.pid: process for process in roots}
    for process in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            found |= {child.pid: child for child in process.children(recursive=True)}
    return list(found.values())


@pytest.fixture
def ray_head():
    """A Ray head of its own: the dashboard address and the environment to talk to it with."""
    temp_dir = tempfile.mkdtemp(prefix="rayhead-", dir="/tmp")
    dashboard, gcs = free_port(), free_port()
    low = random.randrange(20_000, 40_000, 200)
    # The job's entrypoint runs with the head's PATH: the venv goes first. Token auth is set the
    # same way for the head and for the client.
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    start = [
        str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
        f"--ray-client-server-port={free_port()}", f"--min-worker-port={low}", f"--max-worker-port={low + 199}",
        f"--temp-dir={temp_dir}", "--num-cpus=2", "--disable-usage-stats",
    ]
    subprocess.run(start, env=env, check=True, timeout=180, capture_output=True)
    try:
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        started = processes_of(temp_dir, gcs)
        for process in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(started, timeout=15)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        assert not [p for p in processes_of(temp_dir, gcs) if p.status() != psutil.STATUS_ZOMBIE], "the head's processes outlived it"
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_submit_script_runs_the_tiny_sweep_on_a_ray_head_and_reports_success(ray_head, tmp_path):
    address, env = ray_head
    storage = tmp_path / "sweeps"
    submission = f"e2e-{int(time.time())}"
    # A value with ;, $(), backticks, quotes and spaces reaches the job as text, never as a command.
    nasty = """x;echo INJECTED-$(whoami) `echo INJECTED-tick` 'single' "double" spaced"""
    result = subprocess.run(
        ["cluster/submit.sh", "--address", address, "--submission-id", submission, "configs/sweep/tiny.yaml", *MICRO, f"storage_path={storage}", "name=e2e",
         f"train.benchmarks.system_instruction={nasty}"],
        env={**env, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert f"job {submission}: SUCCEEDED" in result.stdout
    assert not re.findall(r"(?<!echo )INJECTED-", result.stdout + result.stderr)  # only ever echoed as the literal override
    import yaml

    assert yaml.safe_load((storage / "e2e" / "sweep.yaml").read_text())["train"]["benchmarks"]["system_instruction"] == nasty
    assert "best λ:" in result.stdout  # the sweep's own summary, followed through the job's logs

    table = pd.read_csv(storage / "e2e" / "results.csv", dtype={"trial_id": str})  # an id such as 84e12345 would read as a float
    assert len(table) == 2 and (table["status"] == "TERMINATED").all() and table["objective"].notna().all()
    for trial_id in table["trial_id"]:
        assert (storage / "e2e" / "runs" / trial_id / "eval.json").is_file()
    assert (storage / "e2e" / "schedule.json").is_file() and (storage / "e2e" / "objective.png").is_file()


def test_submit_script_refuses_bad_input_before_reaching_a_cluster(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    no_address = subprocess.run(["cluster/submit.sh", "configs/sweep/tiny.yaml"], env=env, capture_output=True, text=True)
    assert no_address.returncode == 2 and "RAY_ADDRESS" in no_address.stderr
    bad_config = subprocess.run(["cluster/submit.sh", "--address", "http://127.0.0.1:1", "configs/sweep/tiny.yaml", "searcher.name=nope"], env=env, capture_output=True, text=True)
    assert bad_config.returncode != 0 and "searcher.name" in bad_config.stderr
