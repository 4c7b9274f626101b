"""cluster/: the launcher config, runtime env and KubeRay manifests are what Ray and KubeRay accept,
and they point at configs that exist and pass --dry-run. (No cloud or Kubernetes cluster is
reachable here; tests/integration/test_cluster.py runs the `ray job submit` path for real.)"""

import json
import os
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from lambda_dpo.cli import main
from search.sweep_config import load_sweep_config

CLUSTER = Path("cluster")


def load(path):
    return yaml.safe_load((CLUSTER / path).read_text())


def test_cluster_launcher_config_satisfies_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load("cluster.yaml")
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    validate_config(prepare_config(config))
    assert config["available_node_types"]["gpu_worker"]["resources"]["GPU"] >= 1
    assert any("pip install -e ." in command for command in config["setup_commands"])


def test_runtime_env_is_valid_and_holds_no_secret_values():
    from ray.runtime_env import RuntimeEnv

    env = load("runtime_env.yaml")
    RuntimeEnv(**env)
    assert env["working_dir"] == "." and ".venv/" in env["excludes"]
    assert not any(name.endswith(("_TOKEN", "_KEY", "SECRET", "PASSWORD")) for name in env.get("env_vars", {}))


def test_a_job_keeps_ray_trains_own_poll_interval():
    from search.sweep import TRAIN_POLL_INTERVAL

    assert TRAIN_POLL_INTERVAL[0] not in load("runtime_env.yaml")["env_vars"]  # it deadlocked tracked sweeps on a joined cluster


def test_the_local_cluster_gets_the_poll_interval_unless_one_is_set(monkeypatch):
    import search.sweep as sweep

    started = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: started.update(kwargs, interval=os.environ.get(sweep.TRAIN_POLL_INTERVAL[0])))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(sweep.TRAIN_POLL_INTERVAL[0], raising=False)
    assert sweep.connect_ray() and started["interval"] == sweep.TRAIN_POLL_INTERVAL[1] and started["address"] == "local"
    monkeypatch.setenv(sweep.TRAIN_POLL_INTERVAL[0], "1.5")
    sweep.connect_ray()
    assert started["interval"] == "1.5"
    monkeypatch.delenv(sweep.TRAIN_POLL_INTERVAL[0])
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a cluster that is joined keeps its own
    sweep.connect_ray()
    assert started["interval"] is None and started["address"] == "127.0.0.1:6379"


@pytest.mark.parametrize("manifest", ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml"])
def test_kuberay_manifests_use_the_pinned_ray_and_the_shared_volume(manifest):
    document = load(manifest)
    assert document["apiVersion"] == "ray.io/v1" and document["kind"] in ("RayCluster", "RayJob")
    spec = document["spec"].get("rayClusterSpec", document["spec"])
    assert spec["rayVersion"] == ray.__version__
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        assert container["image"].startswith(f"rayproject/ray:{ray.__version__}")
        assert {"name": "shared", "mountPath": "/mnt/shared"} in container["volumeMounts"]
        token = [e for e in container.get("env", []) if e["name"] == "HF_TOKEN"]
        assert token and "value" not in token[0]  # from a Kubernetes secret, never inline
    assert any("nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"] for g in spec["workerGroupSpecs"])


def test_rayjob_entrypoint_runs_a_shipped_sweep_config_that_passes_dry_run(capsys):
    job = load("kuberay/rayjob.yaml")["spec"]
    command = shlex.split(job["entrypoint"])
    assert command[:4] == ["python", "-m", "lambda_dpo.cli", "sweep"]
    config_path = command[4]
    assert main(["sweep", config_path, "--dry-run"]) == 0
    config = load_sweep_config(config_path)
    assert config.storage_path.startswith("/mnt/shared") and config.resources.use_gpu
    assert yaml.safe_load(job["runtimeEnvYAML"])["working_dir"].endswith(".zip")


def test_submit_script_is_executable_and_documented():
    script = CLUSTER / "submit.sh"
    assert os.access(script, os.X_OK)
    readme = (CLUSTER / "README.md").read_text()
    for command in ("cluster/submit.sh", "ray job logs", "ray job status", "ray job stop", "ray up cluster/cluster.yaml", "kubectl apply -f cluster/kuberay/rayjob.yaml"):
        assert command in readme, command


NASTY = ["name=x;echo INJECTED-$(whoami)", "train.benchmarks.system_instruction=a `id` b", "output_dir=it's \"quoted\" & spaced | piped > out"]


def test_the_jobs_entrypoint_quotes_every_argument_for_the_shell():
    """`ray job submit` runs its entrypoint with a shell: an override must not run as a command."""
    import subprocess

    from cluster.submit_job import entrypoint

    command = entrypoint("configs/sweep/tiny.yaml", NASTY)
    assert shlex.split(command) == ["python", "-m", "lambda_dpo.cli", "sweep", "configs/sweep/tiny.yaml", *NASTY]
    echoed = subprocess.run(["sh", "-c", command.replace("python -m lambda_dpo.cli", "printf '%s\\n'", 1)], capture_output=True, text=True, check=True)
    assert echoed.stdout.splitlines() == ["sweep", "configs/sweep/tiny.yaml", *NASTY]


@pytest.mark.parametrize("name", ["HF_TOKEN", "WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"])
def test_secrets_are_not_passed_into_a_jobs_runtime_env(name):
    from cluster.submit_job import runtime_env

    with pytest.raises(SystemExit, match=f"--pass-env {name}: looks like a secret"):
        runtime_env(str(CLUSTER / "runtime_env.yaml"), [name])


def test_a_plain_variable_is_passed_by_name_and_nothing_goes_on_a_command_line(monkeypatch):
    from cluster.submit_job import runtime_env

    monkeypatch.setenv("WANDB_PROJECT", "lambda")
    assert runtime_env(str(CLUSTER / "runtime_env.yaml"), ["WANDB_PROJECT", "UNSET_NAME"])["env_vars"]["WANDB_PROJECT"] == "lambda"
    script = (CLUSTER / "submit.sh").read_text()
    assert "--runtime-env-json" not in script and "HF_TOKEN" not in script.split("set -euo pipefail")[1]


def test_the_dashboard_is_not_exposed_beyond_the_head_or_the_kubernetes_cluster():
    head = " ".join(load("cluster.yaml")["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    for manifest in ("kuberay/raycluster.yaml", "kuberay/rayjob.yaml"):
        spec = load(manifest)["spec"]
        assert spec.get("rayClusterSpec", spec)["headGroupSpec"]["serviceType"] == "ClusterIP"
    cluster = load("kuberay/raycluster.yaml")["spec"]
    for group in (cluster["headGroupSpec"], *cluster["workerGroupSpecs"]):
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
    assert "## Security" in (CLUSTER / "README.md").read_text()
