"""Config validation and the pure pieces of the training loop (no model)."""

from pathlib import Path

import pytest

from lambda_dpo.config import ConfigError, load_config
from lambda_dpo.data.loading import load_examples
from lambda_dpo.data.records import DEFAULT_DIMENSIONS
from lambda_dpo.evaluate import EvalConfig
from lambda_dpo.train import TrainConfig, batch_order, split_examples

TINY = "configs/train/tiny.yaml"


@pytest.mark.parametrize("path", sorted(Path("configs/train").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_train_config_loads(path):
    assert load_config(TrainConfig, path).optim.max_steps > 0


def test_the_tiny_config_loads():
    config = load_config(TrainConfig, TINY)
    assert config.model.uses_random_init() and config.data.source.startswith("synthetic:") and config.sft.steps > 0


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.bogus=1", "optim.bogus"),
        ("loss.name=ipo", "loss.name must be one of"),
        ("loss.logp_reduction=max", "loss.logp_reduction"),
        ("optim.max_steps=0", "optim.max_steps"),
        ("eval.fraction=1.5", "eval.fraction"),
        ("model.dtype=float8", "model.dtype"),
        ("lambdas.sampler=fixed", "lambdas.weights"),
        ("optim.learning_rate=fast", "optim.learning_rate"),
        ("optim.warmup_ratio=1.5", "optim.warmup_ratio must be in"),  # was accepted: its check sat after a return
        ("optim.on_nonfinite=ignore", "optim.on_nonfinite must be one of"),
        ("eval.max_new_tokens=0", "eval.max_new_tokens"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(TrainConfig, TINY, [override])


def test_batch_order_is_a_fresh_permutation_per_epoch_and_reproducible():
    seen = [batch_order(10, 3, seed=1, micro_step=step) for step in range(6)]
    assert [epoch for _, epoch in seen] == [0, 0, 0, 1, 1, 1]
    first_epoch = sum((indices for indices, _ in seen[:3]), [])
    assert len(set(first_epoch)) == 9  # drop-last: 3 batches of 3 distinct examples
    assert seen[4] == batch_order(10, 3, seed=1, micro_step=4)
    assert [i for i, _ in seen[:3]] != [i for i, _ in seen[3:]]
    with pytest.raises(ValueError, match="batch_size"):
        batch_order(2, 3, seed=0, micro_step=0)


def test_split_is_disjoint_fixed_and_independent_of_the_training_seed():
    examples, _ = load_examples("synthetic:50", dimensions=DEFAULT_DIMENSIONS)
    train, held_out = split_examples(examples, EvalConfig(fraction=0.2))
    assert len(held_out) == 10 and len(train) == 40
    assert not {e.record_id for e in train} & {e.record_id for e in held_out}
    assert [e.record_id for e in split_examples(examples, EvalConfig(fraction=0.2))[1]] == [e.record_id for e in held_out]


def test_eval_lambda_defaults_to_the_centroid_and_is_validated():
    assert EvalConfig().mixed_lambda(4).tolist() == [0.25] * 4
    with pytest.raises(ValueError, match="eval.weights"):
        EvalConfig(weights=[0.5, 0.6]).mixed_lambda(2)
