"""`configs list` and `configs copy`: a pip-installed user starts from the shipped YAMLs."""

from pathlib import Path

import pytest

from lambda_dpo.cli import main
from lambda_dpo.config import ConfigError, config_summary, shipped_config, shipped_configs


def test_every_shipped_yaml_is_listed_with_its_summary(capsys):
    listed = shipped_configs()
    on_disk = {f"{path.parent.name}/{path.stem}" for kind in ("train", "sweep", "eval") for path in Path("configs", kind).glob("*.yaml")}
    assert set(listed) == on_disk
    assert main(["configs", "list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert all(name in out for name in ("train/tiny", "sweep/tiny", "eval/paper", "train/smollm2-135m-verifiable"))
    assert config_summary(listed["train/tiny"]).startswith("The embedded default: a random-init tiny Llama")


def test_names_resolve_with_or_without_kind_and_ambiguity_is_named():
    assert shipped_config("train/tiny.yaml") == shipped_config("train/tiny") == shipped_configs()["train/tiny"]
    assert shipped_config("tiny-conditioned").name == "tiny-conditioned.yaml"  # one kind has it
    with pytest.raises(ConfigError, match="names 2 shipped configs .*train/smollm2-135m-verifiable, sweep/smollm2-135m-verifiable"):
        shipped_config("smollm2-135m-verifiable")
    with pytest.raises(ConfigError, match="names 3 shipped configs .*train/tiny, sweep/tiny, eval/tiny"):
        shipped_config("tiny")
    with pytest.raises(ConfigError, match="no shipped config 'nope'"):
        shipped_config("nope")


def test_copy_into_a_new_directory_runs_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["configs", "copy", "train/tiny", f"{tmp_path / 'mine'}/"]) == 0
    copied = tmp_path / "mine" / "tiny.yaml"
    assert copied.read_text() == shipped_configs()["train/tiny"].read_text()
    assert f"lambda-dpo train {copied}" in " ".join(capsys.readouterr().out.split())
    assert main(["train", str(copied), f"output_dir={tmp_path / 'run'}", "--dry-run"]) == 0  # its model and data paths still resolve
    capsys.readouterr()
    assert main(["config", "copy", "sweep/tiny", str(copied)]) == 2
    assert "exists; choose another DEST or pass --force" in capsys.readouterr().err
    assert main(["config", "copy", "sweep/tiny", str(copied), "--force"]) == 0
    assert copied.read_text().startswith("# The embedded default sweep")
