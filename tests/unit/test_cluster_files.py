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
