import math

import pytest
import torch
import torch.nn.functional as F

from lambda_dpo.loss import (
    best_worst_pairs,
    dpo_loss,
    lambda_dpo_loss,
    log_odds,
    mixed_target,
    orpo_loss,
    simpo_loss,
)
from lambda_dpo.preferences import ratings_to_targets

NAN = float("nan")


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def random_case(batch=5, slots=4, dims=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    policy = -torch.rand(batch, slots, generator=generator) * 20
    reference = -torch.rand(batch, slots, generator=generator) * 20
    ratings = torch.randint(1, 6, (batch, dims, slots), generator=generator).double()
    lambdas = torch.distributions.Dirichlet(torch.ones(dims)).sample((batch,))
    return policy, reference, ratings, lambdas


def test_hand_worked_value():
    # r = [0, ln 2, ln 3] → P = [1/6, 2/6, 3/6]; p_1 = [½, ½, 0], p_2 = [0, 0, 1]; λ = (½, ½).
    # loss = ½·(½ ln 6 + ½ ln 3) + ½·ln 2 = ¼ ln 72.
    policy = torch.tensor([[0.0, math.log(2), math.log(3)]])
    reference = torch.zeros(1, 3)
    targets = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]])
    out = lambda_dpo_loss(policy, reference, targets, torch.tensor([[0.5, 0.5]]), beta=1.0)
    assert out.loss.item() == pytest.approx(math.log(72) / 4, abs=1e-12)
    assert out.per_dimension.tolist() == pytest.approx([0.5 * math.log(6) + 0.5 * math.log(3), math.log(2)])
    torch.testing.assert_close(out.rewards, policy)


def test_hand_worked_value_with_na_restricts_the_softmax():
    # Dimension 2 rates only responses 1 and 2: its softmax is over {ln 2, ln 3} = [2/5, 3/5].
    policy = torch.tensor([[0.0, math.log(2), math.log(3)]])
    targets = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]])
    target_mask = torch.tensor([[[True, True, True], [False, True, True]]])
    out = lambda_dpo_loss(policy, torch.zeros(1, 3), targets, torch.tensor([[0.5, 0.5]]), beta=1.0, target_mask=target_mask)
    expected = 0.5 * (0.5 * math.log(6) + 0.5 * math.log(3)) + 0.5 * math.log(5 / 3)
    assert out.loss.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_two_responses_one_hot_equals_dpo(seed):
    policy, reference, _, lambdas = random_case(batch=6, slots=2, dims=4, seed=seed)
    beta = 0.1
    targets = torch.zeros(6, 4, 2)
    targets[:, :, 0] = 1.0  # response 0 wins in every dimension
    out = lambda_dpo_loss(policy, reference, targets, lambdas, beta=beta)
    expected = -F.logsigmoid(beta * ((policy[:, 0] - reference[:, 0]) - (policy[:, 1] - reference[:, 1]))).mean()
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-6)
    baseline = dpo_loss(policy, reference, targets[:, 0, :], beta=beta)
    assert baseline.loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert baseline.num_skipped == 0


@pytest.mark.parametrize("seed", range(5))
def test_full_ratings_equal_mixture_cross_entropy(seed):
    policy, reference, ratings, lambdas = random_case(seed=seed)
    beta = 0.5
    targets, _ = ratings_to_targets(ratings)
    out = lambda_dpo_loss(policy, reference, targets, lambdas, beta=beta)
    p_lambda = (lambdas.unsqueeze(-1) * targets).sum(dim=1)
    log_p_theta = torch.log_softmax(beta * (policy - reference), dim=-1)
    assert out.loss.item() == pytest.approx(-(p_lambda * log_p_theta).sum(-1).mean().item(), abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_gradient_is_beta_times_model_minus_target_over_batch(seed):
    policy, reference, ratings, lambdas = random_case(seed=seed)
    beta = 0.3
    policy.requires_grad_(True)
    targets, _ = ratings_to_targets(ratings)
    lambda_dpo_loss(policy, reference, targets, lambdas, beta=beta).loss.backward()
    p_theta = torch.softmax(beta * (policy.detach() - reference), dim=-1)
    p_lambda = (lambdas.unsqueeze(-1) * targets).sum(dim=1)
    torch.testing.assert_close(policy.grad, beta * (p_theta - p_lambda) / policy.shape[0], atol=1e-6, rtol=0)


def test_permuting_responses_with_their_targets_changes_nothing():
    policy, reference, ratings, lambdas = random_case(seed=3)
    ratings[0, 1, 2] = NAN
    targets, mask = ratings_to_targets(ratings)
    out = lambda_dpo_loss(policy, reference, targets, lambdas, beta=0.2, target_mask=mask)
    order = torch.tensor([2, 0, 3, 1])
    permuted = lambda_dpo_loss(
        policy[:, order], reference[:, order], targets[..., order], lambdas, beta=0.2, target_mask=mask[..., order]
    )
    assert permuted.loss.item() == pytest.approx(out.loss.item(), abs=1e-12)
    torch.testing.assert_close(permuted.rewards, out.rewards[:, order])


def test_padded_response_slot_changes_nothing():
    policy, reference, ratings, lambdas = random_case(slots=3, seed=4)
    policy.requires_grad_(True)
    targets, mask = ratings_to_targets(ratings)
    out = lambda_dpo_loss(policy, reference, targets, lambdas, beta=0.2, target_mask=mask)
    (grad,) = torch.autograd.grad(out.loss, policy)

    padded_policy = torch.cat([policy.detach(), torch.full((5, 1), 123.0)], dim=1).requires_grad_(True)
    padded_reference = torch.cat([reference, torch.full((5, 1), -7.0)], dim=1)
    padded_targets = torch.cat([targets, torch.full((5, 4, 1), 0.3)], dim=2)  # garbage in the pad slot
    padded_mask = torch.cat([mask, torch.ones(5, 4, 1, dtype=torch.bool)], dim=2)
    response_mask = torch.tensor([[True, True, True, False]] * 5)
    padded = lambda_dpo_loss(
        padded_policy, padded_reference, padded_targets, lambdas, beta=0.2,
        response_mask=response_mask, target_mask=padded_mask,
    )
    (padded_grad,) = torch.autograd.grad(padded.loss, padded_policy)
    assert padded.loss.item() == pytest.approx(out.loss.item(), abs=1e-12)
    torch.testing.assert_close(padded_grad[:, :3], grad)
    assert torch.all(padded_grad[:, 3] == 0)


def test_na_response_is_left_out_of_its_dimension_not_made_worst():
    policy = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    reference = torch.zeros(1, 3)
    ratings = torch.tensor([[[5.0, 3.0, NAN]]])  # one dimension; response 2 unrated
    targets, mask = ratings_to_targets(ratings)
    out = lambda_dpo_loss(policy, reference, targets, torch.ones(1, 1), beta=1.0, target_mask=mask)
    out.loss.backward()
    # The unrated response gets no gradient: it is neither pushed down nor up.
    assert policy.grad[0, 2].item() == 0.0
    # The loss is that of the two rated responses alone.
    alone = lambda_dpo_loss(policy.detach()[:, :2], reference[:, :2], targets[..., :2], torch.ones(1, 1), beta=1.0)
    assert out.loss.item() == pytest.approx(alone.loss.item(), abs=1e-12)
    # Treating N/A as the worst rating (the paper's defect) gives a different loss.
    worst, _ = ratings_to_targets(torch.tensor([[[5.0, 3.0, 1.0]]]))
    as_worst = lambda_dpo_loss(policy.detach(), reference, worst, torch.ones(1, 1), beta=1.0)
    assert abs(as_worst.loss.item() - out.loss.item()) > 1e-3


def test_unavailable_dimension_is_dropped_and_lambda_renormalised():
    policy, reference, ratings, _ = random_case(batch=1, slots=4, dims=2, seed=5)
    ratings[0, 1, 1:] = NAN  # dimension 1 has a single rated response: unavailable
    targets, mask = ratings_to_targets(ratings)
    mixed = lambda_dpo_loss(policy, reference, targets, torch.tensor([[0.3, 0.7]]), beta=1.0, target_mask=mask)
    first_only = lambda_dpo_loss(policy, reference, targets, torch.tensor([[1.0, 0.0]]), beta=1.0, target_mask=mask)
    assert mixed.loss.item() == pytest.approx(first_only.loss.item(), abs=1e-12)
    assert mixed.available.tolist() == [[True, False]]
    assert math.isnan(mixed.per_dimension[1].item())

    # λ all on the unavailable dimension: the prompt carries no signal and is not averaged in.
    nothing = lambda_dpo_loss(policy, reference, targets, torch.tensor([[0.0, 1.0]]), beta=1.0, target_mask=mask)
    assert nothing.used.tolist() == [False]
    assert nothing.loss.item() == 0.0


def test_prompts_without_signal_do_not_dilute_the_mean():
    policy, reference, ratings, lambdas = random_case(batch=2, seed=6)
    ratings[1] = NAN  # second prompt entirely unrated
    targets, mask = ratings_to_targets(ratings)
    both = lambda_dpo_loss(policy, reference, targets, lambdas, beta=1.0, target_mask=mask)
    first = lambda_dpo_loss(policy[:1], reference[:1], targets[:1], lambdas[:1], beta=1.0, target_mask=mask[:1])
    assert both.loss.item() == pytest.approx(first.loss.item(), abs=1e-12)


def test_extreme_rewards_stay_finite():
    policy = torch.tensor([[1e4, -1e4, 0.0]], requires_grad=True)
    targets, mask = ratings_to_targets(torch.tensor([[[1.0, 5.0, NAN]]]))
    out = lambda_dpo_loss(policy, torch.zeros(1, 3), targets, torch.ones(1, 1), beta=1.0, target_mask=mask)
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and torch.isfinite(policy.grad).all()


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="lambdas must be"):
        lambda_dpo_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4, 3), torch.zeros(2, 3), beta=1.0)
    with pytest.raises(ValueError, match="targets must be"):
        lambda_dpo_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4, 2), torch.zeros(2, 4), beta=1.0)


# --- baselines ---------------------------------------------------------------------------


def test_best_worst_pairs_skip_ties_and_ineligible():
    preference = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.5, 0.0], [0.2, 0.2, 0.6]])
    eligible = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    chosen, rejected, valid = best_worst_pairs(preference, eligible)
    assert chosen[0].item() == 1 and rejected[0].item() == 0
    assert valid.tolist() == [True, False, False]  # tie; a single eligible response


def test_mixed_target_marks_responses_missing_a_weighted_rating_ineligible():
    ratings = torch.tensor([[[5.0, 1.0, 3.0], [NAN, 2.0, 4.0]]])
    targets, mask = ratings_to_targets(ratings)
    _, eligible = mixed_target(targets, torch.tensor([[0.5, 0.5]]), target_mask=mask)
    assert eligible.tolist() == [[False, True, True]]
    _, eligible_first_only = mixed_target(targets, torch.tensor([[1.0, 0.0]]), target_mask=mask)
    assert eligible_first_only.tolist() == [[True, True, True]]


def test_dpo_counts_skipped_ties():
    preference = torch.tensor([[0.7, 0.3], [0.5, 0.5]])
    out = dpo_loss(torch.tensor([[-1.0, -2.0], [-3.0, -3.0]]), torch.zeros(2, 2), preference, beta=1.0)
    assert out.num_skipped == 1
    assert out.loss.item() == pytest.approx(-F.logsigmoid(torch.tensor(1.0)).item())


def test_simpo_hand_value():
    policy = torch.tensor([[-6.0, -12.0, -2.0]])
    lengths = torch.tensor([[3, 4, 1]])
    preference = torch.tensor([[0.7, 0.2, 0.1]])  # winner 0, loser 2
    out = simpo_loss(policy, lengths, preference, beta=2.0, gamma=0.5)
    margin = 2.0 * (-6.0 / 3) - 2.0 * (-2.0 / 1) - 0.5
    assert out.loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-margin))))


def test_orpo_hand_value():
    mean_logps = torch.tensor([[math.log(0.5), math.log(0.2)]])
    out = orpo_loss(mean_logps, torch.tensor([[1.0, 0.0]]), alpha=0.1)
    odds_ratio = math.log(0.5 / 0.5) - math.log(0.2 / 0.8)
    expected = -math.log(0.5) - 0.1 * math.log(1 / (1 + math.exp(-odds_ratio)))
    assert out.loss.item() == pytest.approx(expected)


def test_log_odds_is_stable_near_one():
    assert torch.isfinite(log_odds(torch.tensor([0.0, -1e-12, -50.0]))).all()
