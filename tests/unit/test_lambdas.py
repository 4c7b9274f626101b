import json

import numpy as np
import pytest

from lambda_dpo.lambdas import (
    SCHEDULE_FORMAT,
    DirichletSampler,
    GaussianSampler,
    LambdaConfig,
    VerticesSampler,
    build_sampler,
    lambdas_for_examples,
    parse_numbers,
    read_schedule,
    validate_lambda,
)

DIMENSIONS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]


@pytest.mark.parametrize("m", [3, 4])
def test_dirichlet_one_is_uniform_on_the_simplex(m):
    samples = DirichletSampler(np.ones(m)).sample(np.random.default_rng(0), 40_000)
    # Each marginal is Beta(1, m-1): mean 1/m, variance (m-1)/(m²(m+1)).
    mean, variance = 1 / m, (m - 1) / (m**2 * (m + 1))
    standard_error = np.sqrt(variance / len(samples))
    assert np.all(np.abs(samples.mean(axis=0) - mean) < 5 * standard_error)
    assert np.allclose(samples.var(axis=0), variance, rtol=0.05)
    assert np.allclose(samples.sum(axis=1), 1.0)


def test_per_example_lambdas_are_reproducible_and_independent_of_batching():
    sampler = build_sampler(LambdaConfig(sampler="dirichlet"), DIMENSIONS)
    whole = lambdas_for_examples(sampler, range(10), seed=7, epoch=1)
    split = np.concatenate([lambdas_for_examples(sampler, [7, 8, 9], seed=7, epoch=1), lambdas_for_examples(sampler, range(7), seed=7, epoch=1)])
    assert np.array_equal(whole, np.concatenate([split[3:], split[:3]]))
    assert not np.array_equal(whole, lambdas_for_examples(sampler, range(10), seed=8, epoch=1))
    assert not np.array_equal(whole, lambdas_for_examples(sampler, range(10), seed=7, epoch=2))


def test_per_example_dirichlet_is_uniform_too():
    sampler = build_sampler(LambdaConfig(sampler="dirichlet"), DIMENSIONS)
    samples = lambdas_for_examples(sampler, range(20_000), seed=0)
    assert np.allclose(samples.mean(axis=0), 0.25, atol=0.006)
    assert np.allclose(samples.var(axis=0), 3 / 80, rtol=0.06)


def test_dirichlet_with_weights_is_centred_on_them():
    centre = [0.5, 0.3, 0.2, 0.0]
    sampler = build_sampler(LambdaConfig(sampler="dirichlet", weights=centre, dirichlet_alpha=5.0), DIMENSIONS)
    assert np.allclose(sampler.alpha, [10.0, 6.0, 4.0, 1e-3])
    samples = sampler.sample(np.random.default_rng(0), 20_000)
    assert np.allclose(samples.mean(axis=0), centre, atol=0.005)
    # the centroid as centre is the plain Dir(α)
    assert np.allclose(build_sampler(LambdaConfig(sampler="dirichlet", weights=[0.25] * 4, dirichlet_alpha=2.0), DIMENSIONS).alpha, 2.0)
    with pytest.raises(ValueError, match="lambdas.weights"):
        build_sampler(LambdaConfig(sampler="dirichlet", weights=[0.5, 0.6, 0, 0]), DIMENSIONS)


def test_anchor_share_gives_the_anchor_to_that_share_and_draws_the_rest():
    config = LambdaConfig(sampler="dirichlet", dirichlet_alpha=0.5, anchor_share=0.3)
    samples = lambdas_for_examples(build_sampler(config, DIMENSIONS), range(20_000), seed=0)
    at_centroid = np.all(samples == 0.25, axis=1)
    assert abs(at_centroid.mean() - 0.3) < 0.015
    # the rest are Dir(0.5) draws: marginal variance (m-1)/(m²(mα+1)) = 3/48
    assert np.allclose(samples[~at_centroid].var(axis=0), 3 / 48, rtol=0.06)
    anchored = build_sampler(LambdaConfig(sampler="vertices", weights=[0.7, 0.1, 0.1, 0.1], anchor_share=0.5), DIMENSIONS)
    rows = anchored.sample(np.random.default_rng(1), 1000)
    assert {tuple(row) for row in rows} == {(0.7, 0.1, 0.1, 0.1), *map(tuple, np.eye(4))}


def test_anchor_share_is_checked():
    with pytest.raises(ValueError, match=r"lambdas.anchor_share must be in \[0, 1\)"):
        LambdaConfig(anchor_share=1.0)
    with pytest.raises(ValueError, match="lambdas.anchor_share applies to the dirichlet"):
        LambdaConfig(sampler="fixed", weights=[0.25] * 4, anchor_share=0.2)
    # no share: the plain sampler, drawing exactly as before
    assert isinstance(build_sampler(LambdaConfig(sampler="dirichlet"), DIMENSIONS), DirichletSampler)


def test_gaussian_is_softmax_of_normal():
    samples = GaussianSampler(4, 1.0).sample(np.random.default_rng(0), 5000)
    assert np.allclose(samples.sum(axis=1), 1.0) and np.all(samples > 0)
    logits = np.log(samples)
    centred = logits - logits.mean(axis=1, keepdims=True)
    # softmax loses the common offset: centred logits have variance σ²(1 - 1/m).
    assert np.allclose(centred.var(axis=0), 0.75, rtol=0.08)
    assert np.allclose(GaussianSampler(4, 0.0).sample(np.random.default_rng(0), 3), 0.25)


def test_vertices_are_one_hot():
    random_vertices = VerticesSampler(4).sample(np.random.default_rng(0), 4000)
    assert np.all(random_vertices.max(axis=1) == 1) and np.all(random_vertices.sum(axis=1) == 1)
    assert np.allclose(random_vertices.mean(axis=0), 0.25, atol=0.03)
    assert np.all(VerticesSampler(4, 2).sample(np.random.default_rng(0), 5)[:, 2] == 1)


def test_fixed_and_uniform():
    fixed = build_sampler(LambdaConfig(sampler="fixed", weights=[0.7, 0.1, 0.1, 0.1]), DIMENSIONS)
    assert np.allclose(lambdas_for_examples(fixed, [0, 1], seed=0), [[0.7, 0.1, 0.1, 0.1]] * 2)
    uniform = build_sampler(LambdaConfig(sampler="uniform"), DIMENSIONS)
    assert np.allclose(lambdas_for_examples(uniform, [5], seed=0), 0.25)


def write_schedule(path, candidates, probabilities, dimensions=DIMENSIONS):
    path.write_text(json.dumps({
        "format": SCHEDULE_FORMAT, "version": 1, "dimensions": dimensions,
        "candidates": candidates, "probabilities": probabilities,
    }))
    return path


def test_scheduled_sampler_follows_the_schedule(tmp_path):
    candidates = [[1, 0, 0, 0], [0, 1, 0, 0], [0.25, 0.25, 0.25, 0.25]]
    path = write_schedule(tmp_path / "schedule.json", candidates, [0.6, 0.1, 0.3])
    sampler = build_sampler(LambdaConfig(sampler="scheduled", schedule=str(path)), DIMENSIONS)
    draws = lambdas_for_examples(sampler, range(6000), seed=0)
    frequencies = [np.mean(np.all(np.isclose(draws, c), axis=1)) for c in candidates]
    assert frequencies == pytest.approx([0.6, 0.1, 0.3], abs=0.02)


@pytest.mark.parametrize(
    "values, message",
    [
        ([0.5, 0.5], "must have 4 components"),
        ([0.5, 0.5, 0.5, -0.5], "negative"),
        ([0.3, 0.3, 0.3, 0.3], "sums to 1.2"),
        ([float("nan"), 0.5, 0.25, 0.25], "non-finite"),
    ],
)
def test_invalid_lambda_names_the_problem(values, message):
    with pytest.raises(ValueError, match=message):
        validate_lambda(values, 4)


def test_lambda_within_tolerance_is_accepted():
    validate_lambda([0.25, 0.25, 0.25, 0.25 + 5e-7], 4)
    assert validate_lambda(parse_numbers("0.7,0.1,0.1,0.1"), 4).tolist() == [0.7, 0.1, 0.1, 0.1]  # what --lambda does
    with pytest.raises(ValueError, match="comma-separated"):
        parse_numbers("0.7;0.3", name="--lambda")


def test_sampler_config_errors(tmp_path):
    with pytest.raises(ValueError, match="lambdas.sampler must be one of"):
        LambdaConfig(sampler="beta")
    with pytest.raises(ValueError, match="needs lambdas.weights"):
        LambdaConfig(sampler="fixed")
    with pytest.raises(ValueError, match="lambdas.weights sums to 1.1"):
        build_sampler(LambdaConfig(sampler="fixed", weights=[0.5, 0.2, 0.2, 0.2]), DIMENSIONS)
    with pytest.raises(ValueError, match="lambdas.vertex"):
        build_sampler(LambdaConfig(sampler="vertices", vertex=4), DIMENSIONS)
    with pytest.raises(FileNotFoundError, match="schedule file not found"):
        build_sampler(LambdaConfig(sampler="scheduled", schedule=str(tmp_path / "nope.json")), DIMENSIONS)
    other = write_schedule(tmp_path / "other.json", [[1, 0], [0, 1]], [0.5, 0.5], dimensions=["a", "b"])
    with pytest.raises(ValueError, match="is over dimensions"):
        build_sampler(LambdaConfig(sampler="scheduled", schedule=str(other)), DIMENSIONS)


def test_schedule_file_is_validated(tmp_path):
    bad = write_schedule(tmp_path / "bad.json", [[0.5, 0.6, 0, 0]], [1.0])
    with pytest.raises(ValueError, match=r"candidates\[0\] sums to 1.1"):
        read_schedule(bad)
    mismatch = write_schedule(tmp_path / "mismatch.json", [[1, 0, 0, 0]], [0.5, 0.5])
    with pytest.raises(ValueError, match="1 candidates but 2 probabilities"):
        read_schedule(mismatch)
    (tmp_path / "foreign.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a lambda-dpo schedule"):
        read_schedule(tmp_path / "foreign.json")
