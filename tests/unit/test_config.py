import pytest

from lambda_dpo.config import ConfigError, load_config, save_config
from lambda_dpo.lambdas import LambdaConfig


def test_saved_config_loads_back_equal(tmp_path):
    config = load_config(LambdaConfig, overrides=["sampler=fixed", "weights=[0.6,0.2,0.1,0.1]", "seed=3"])
    path = save_config(config, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml"
    assert load_config(LambdaConfig, path) == config


def test_yaml_then_overrides_take_precedence(tmp_path):
    path = tmp_path / "lambdas.yaml"
    path.write_text("sampler: gaussian\ngaussian_sigma: 0.5\n")
    config = load_config(LambdaConfig, path, ["gaussian_sigma=2.0"])
    assert (config.sampler, config.gaussian_sigma) == ("gaussian", 2.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["sampler=dirichlet", "dirichlet_alpa=2"], "key 'dirichlet_alpa'"),
        (["seed=many"], "key 'seed'"),
        (["seed"], "must look like key=value"),
        (["sampler=fixed"], "needs lambdas.weights"),
    ],
)
def test_bad_configs_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(LambdaConfig, overrides=overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(LambdaConfig, tmp_path / "nope.yaml")


def test_config_show_prints_the_resolved_config_with_each_keys_help_and_choices(capsys):
    from lambda_dpo.cli import main

    assert main(["config", "show", "configs/train/tiny.yaml", "optim.max_steps=7"]) == 0
    shown = capsys.readouterr().out
    assert "a train config (TrainConfig), resolved with 1 override(s)" in shown
    assert "  max_steps: 7  # optimizer steps (ignored when `epochs` is set)" in shown
    assert "  name: lambda_dpo  # lambda_dpo | dpo | simpo | orpo [one of: lambda_dpo, dpo, simpo, orpo]" in shown
    assert '    target_modules: ["all-linear"]  # module names to adapt, or [all-linear]' in shown
    assert main(["config", "show", "configs/sweep/tiny.yaml"]) == 0
    shown = capsys.readouterr().out
    assert "a sweep config (SweepConfig)" in shown and "  temperature: 3.0  # τ of p(λ) = softmax(τ·f(λ))" in shown


def test_unreadable_config_files_are_one_line_errors_naming_the_file_and_line(tmp_path, capsys):
    from lambda_dpo.cli import main

    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  name_or_path: [configs\n")
    listed = tmp_path / "listed.yaml"
    listed.write_text("- a\n- b\n")
    assert main(["train", str(broken), "--dry-run"]) == 2
    assert f"{broken}: not valid YAML at line 3, column 1" in capsys.readouterr().err
    assert main(["sweep", str(listed), "--dry-run"]) == 2
    assert f"{listed}: a config file must be a mapping of keys" in capsys.readouterr().err
    assert main(["config", "show", str(listed)]) == 2
    assert capsys.readouterr().err.count("must be a mapping") == 1


def test_version(capsys):
    from lambda_dpo import __version__
    from lambda_dpo.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"lambda-dpo {__version__}"
