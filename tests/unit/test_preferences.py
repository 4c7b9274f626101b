import math

import pytest
import torch

from lambda_dpo.preferences import dimension_available, ratings_to_targets

NAN = float("nan")


def test_targets_are_softmax_of_ratings_over_rated_responses():
    ratings = torch.tensor([[[5.0, 3.0, NAN, 1.0]]])
    targets, mask = ratings_to_targets(ratings, temperature=2.0)
    weights = [math.exp(2.5), math.exp(1.5), 0.0, math.exp(0.5)]
    assert targets[0, 0].tolist() == pytest.approx([w / sum(weights) for w in weights])
    assert mask[0, 0].tolist() == [True, True, False, True]


def test_unrated_dimension_gives_zero_targets_and_no_nan():
    targets, mask = ratings_to_targets(torch.full((1, 2, 3), NAN))
    assert torch.all(targets == 0) and not mask.any()


def test_response_mask_excludes_padding():
    targets, mask = ratings_to_targets(torch.tensor([[[4.0, 4.0, 2.0]]]), response_mask=torch.tensor([[True, True, False]]))
    assert targets[0, 0].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert mask[0, 0].tolist() == [True, True, False]


def test_dimension_needs_two_rated_responses():
    mask = torch.tensor([[[True, False, False], [True, True, False]]])
    assert dimension_available(mask).tolist() == [[False, True]]


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="target_temperature"):
        ratings_to_targets(torch.zeros(1, 1, 2), temperature=0.0)
