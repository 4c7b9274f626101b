"""One local Ray cluster for every Ray test of the session. It is stopped with `ray.shutdown()`,
which ends only the head this session started; Ray's machine-wide stop command is never used, as it
kills every Ray process on the machine by name."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """The address of a private 2-CPU local cluster (its own temp dir, no dashboard)."""
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Short path: Ray's unix sockets live under the temp dir and their names have a length limit.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    # The dashboard serves the State API, which Ray Train's PlacementGroupCleaner needs to free the
    # resources of a trial whose controller was killed (every ASHA-stopped trial): without it they leak.
    context = ray.init(address="local", num_cpus=2, include_dashboard=True, _temp_dir=temp_dir, log_to_driver=False)
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
