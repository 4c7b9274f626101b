"""What a wheel carries: every package, the configs the defaults name, and paths that resolve outside a checkout."""

import tomllib
from pathlib import Path

from lambda_dpo.config import shipped_path

ROOT = Path(__file__).parents[2]


def test_every_package_of_the_source_tree_is_in_the_wheels_package_list():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in [*(ROOT / "lambda_dpo").rglob("__init__.py"), *(ROOT / "search").rglob("__init__.py")]}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_the_defaults_paths_resolve_to_the_shipped_files_from_any_directory(tmp_path, monkeypatch):
    from lambda_dpo.train_config import load_train_config

    monkeypatch.chdir(tmp_path)  # not a checkout: configs/ is not here
    config = load_train_config("configs/train/tiny.yaml")
    assert Path(config.model.name_or_path, "config.json").is_file()
    assert Path(shipped_path("configs/sweep/tiny.yaml")).is_file()
    assert Path(shipped_path("lambda_dpo/data/examples/ultrafeedback_sample.jsonl")).is_file()
    assert shipped_path("configs/train/missing.yaml") == "configs/train/missing.yaml"  # not shipped: left for the caller's error
    assert shipped_path("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
