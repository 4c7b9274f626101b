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


def declared_ranges(cls, prefix=""):
    """(dotted key, field type, interval) of every setting with a declared interval, nested configs included."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        if dataclasses.is_dataclass(kind):
            yield from declared_ranges(kind, f"{prefix}{item.name}.")
        elif item.metadata.get("within") is not None:
            number = float if float in typing.get_args(kind) or kind is float else int
            yield f"{prefix}{item.name}", number, item.metadata["within"]


def outside(number, within):
    """Values of type ``number`` that ``within`` refuses: just past each finite end, and the non-finite ones."""
    bad = []
    if within.low is not None:
        bad.append(within.low if within.closed in ("right", "neither") else within.low - (1 if number is int else 1e-3))
    if within.high is not None:
        bad.append(within.high if within.closed in ("left", "neither") else within.high + (1 if number is int else 1e-3))
    return [*bad, *(["nan", "inf", "-inf"] if number is float else [])]


def sweep_range_cases():
    from search.sweep_config import SweepConfig

    return [(key, value) for key, number, within in declared_ranges(SweepConfig) for value in outside(number, within)]


@pytest.mark.parametrize("key, value", sweep_range_cases())
def test_every_declared_range_refuses_values_outside_it_and_names_the_key(key, value):
    """One declared interval per numeric setting is the whole rule (NaN and ±inf never pass):
    loss.beta=nan and optim.learning_rate=-1 used to pass the config check and fail mid-run."""
    from search.sweep_config import load_sweep_config

    leaf = ".".join(key.split(".")[-2:]) if key.count(".") >= 2 else key.split(".")[-1]
    with pytest.raises(ConfigError, match=rf"{leaf.replace('.', '[.]')} must be"):
        load_sweep_config("configs/sweep/tiny.yaml", [f"{key}={value}"])


def test_there_are_many_declared_ranges_and_the_train_loop_ones_are_among_them():
    keys = {key for key, _ in sweep_range_cases()}
    assert {"train.loss.beta", "train.optim.learning_rate", "train.optim.warmup_ratio", "lambda_scheduler.temperature"} <= keys
    assert len(sweep_range_cases()) >= 100


def test_intervals_say_what_they_hold():
    from lambda_dpo.config import AT_LEAST_ONE, POSITIVE, Interval

    assert (str(POSITIVE), str(AT_LEAST_ONE), str(Interval(0, 1, "left"))) == ("> 0", "≥ 1", "in [0, 1)")
    assert 0 not in POSITIVE and 1e-9 in POSITIVE and 1 in Interval(0, 1) and 1 not in Interval(0, 1, "left")
