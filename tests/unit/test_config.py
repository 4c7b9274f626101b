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
