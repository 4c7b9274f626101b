"""The shipped verifiable set v2 has what its recipe promises: every dimension learnable on the
training split, a pair of dimensions that pull apart, enough held-out prompts, and correctness on
problems the model solves in 20–70% of its samples."""

import json

import numpy as np

from lambda_dpo.config import load_config
from lambda_dpo.data.commands import rating_correlations, ratings_differ
from lambda_dpo.run_setup import load_datasets
from lambda_dpo.train_config import TrainConfig
from lambda_dpo.verifiable.build import SHIPPED_SET_V2, solve_rates

CONFIG_V2 = "configs/train/smollm2-135m-verifiable-v2.yaml"


def test_every_dimension_differs_on_at_least_40_percent_of_the_v2_training_prompts():
    config = load_config(TrainConfig, CONFIG_V2)
    assert config.data.source.endswith(SHIPPED_SET_V2.name)
    train, held_out = load_datasets(config)
    assert len(held_out) >= 400 and len(train) >= 800
    for row, dimension in enumerate(config.data.dimensions):
        assert ratings_differ(train, row) >= 0.4 * len(train), dimension
    rho = rating_correlations(train, config.data.dimensions)
    assert np.nanmin(rho) <= -0.3  # conciseness against detail


def test_v2_correctness_is_on_problems_the_model_solves_in_20_to_70_percent_of_its_samples():
    records = [json.loads(line) for line in SHIPPED_SET_V2.read_text().splitlines()]
    rates = solve_rates(records)
    assert set(rates) == {"add", "multiply", "fact"}
    for family, (_, _, right) in rates.items():
        assert 0.2 <= right <= 0.7, family
