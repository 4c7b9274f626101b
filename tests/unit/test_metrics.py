import math

import torch

from lambda_dpo.metrics import chosen_rejected_metrics, length_bias, ndcg, pairwise_accuracy, ranking_metrics, reward_margin, top1_accuracy

NAN = float("nan")


def test_pairwise_accuracy_counts_only_pairs_rated_differently():
    ratings = torch.tensor([[3.0, 1.0, 2.0, NAN], [2.0, 2.0, 5.0, 1.0]])
    rewards = torch.tensor([[0.9, 0.1, 0.0, 5.0], [0.0, 1.0, 2.0, 3.0]])
    # prompt 0: pairs (0>1 ok), (0>2 ok), (2>1 wrong); prompt 1: (0>3 wrong), (1>3 wrong), (2>0 ok), (2>1 ok), (2>3 wrong)
    assert pairwise_accuracy(rewards, ratings) == 4 / 8


def test_pairwise_accuracy_reward_tie_counts_half():
    assert pairwise_accuracy(torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 1.0]])) == 0.5


def test_top1_accuracy_ties_ineligible_and_uninformative_prompts():
    scores = torch.tensor([[5.0, 5.0, 1.0, 0.0], [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0], [1.0, 9.0, 0.0, 0.0]])
    eligible = torch.tensor([[True] * 4, [True] * 4, [True] * 4, [True, False, True, False]])
    rewards = torch.tensor([[0.0, 1.0, 0.5, 0.0], [4.0, 3.0, 2.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 10.0, 1.0, 0.0]])
    # prompt 0: the chosen response ties for best (hit); prompt 1: miss; prompt 2: all tied (dropped);
    # prompt 3: response 1 is not eligible, so the choice is between 0 and 2 and picks 2 (miss).
    assert math.isclose(top1_accuracy(rewards, scores, eligible), 1 / 3, rel_tol=1e-6)


def test_ndcg_is_one_for_the_rating_order_and_lower_when_reversed():
    ratings = torch.tensor([[5.0, 3.0, 1.0, NAN]])
    assert math.isclose(ndcg(torch.tensor([[3.0, 2.0, 1.0, 99.0]]), ratings), 1.0)
    assert ndcg(torch.tensor([[1.0, 2.0, 3.0, 0.0]]), ratings) < 0.8


def test_reward_margin_and_length_bias():
    scores = torch.tensor([[0.7, 0.2, 0.1]])
    eligible = torch.ones(1, 3, dtype=torch.bool)
    assert math.isclose(reward_margin(torch.tensor([[2.0, 0.0, -1.0]]), scores, eligible), 3.0)
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert math.isclose(length_bias(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[5, 6, 7, 8]]), mask), 1.0)
    assert math.isclose(length_bias(torch.tensor([[4.0, 3.0, 2.0, 1.0]]), torch.tensor([[5, 6, 7, 8]]), mask), -1.0)


def test_ranking_metrics_names_and_perfect_scores():
    ratings = torch.tensor([[[4.0, 2.0, 1.0], [1.0, NAN, 3.0]]])
    rewards = torch.tensor([[2.0, 1.0, 0.0]])
    metrics = ranking_metrics(
        rewards=rewards, policy_logps=torch.tensor([[-1.0, -2.0, -3.0]]), reference_logps=torch.tensor([[-1.0, -1.0, -1.0]]),
        lengths=torch.tensor([[3, 4, 5]]), ratings=ratings, response_mask=torch.ones(1, 3, dtype=torch.bool),
        lambdas=torch.tensor([[1.0, 0.0]]), dimensions=["a", "b"],
    )
    assert metrics["top1_accuracy/a"] == metrics["reward_accuracy/a"] == 1.0
    assert metrics["top1_accuracy/b"] == metrics["reward_accuracy/b"] == 0.0  # ranked 0 above 2 but rated 1 < 3
    assert metrics["top1_accuracy/mixed"] == 1.0  # λ = e_a
    assert math.isclose(metrics["logratio/mean"], -1.0)
    assert math.isclose(metrics["logratio/mean"], -1.0) and "kl_to_reference" not in metrics
    assert set(metrics) >= {"ndcg/a", "ndcg/b", "reward_margin", "rewards/margins", "logps/chosen", "length_bias_spearman"}


def test_trl_names_take_the_best_and_worst_under_the_mixed_target():
    # prompt 1: best under the target is slot 0, worst slot 2; prompt 2: best slot 1, worst slot 0 (slot 2 padding)
    scores = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.8, 0.0]])
    eligible = torch.tensor([[True, True, True], [True, True, False]])
    rewards = torch.tensor([[1.0, 5.0, -1.0], [2.0, 0.5, 9.0]])
    logps = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]])
    metrics = chosen_rejected_metrics(rewards, logps, scores, eligible)
    assert metrics["rewards/chosen"] == (1.0 + 0.5) / 2
    assert metrics["rewards/rejected"] == (-1.0 + 2.0) / 2
    assert metrics["rewards/margins"] == reward_margin(rewards, scores, eligible) == (2.0 - 1.5) / 2
    assert metrics["rewards/accuracies"] == 0.5  # prompt 2 ranks its rejected response higher
    assert metrics["logps/chosen"] == (-1.0 - 5.0) / 2 and metrics["logps/rejected"] == (-3.0 - 4.0) / 2


def test_trl_names_are_nan_without_two_eligible_responses():
    metrics = chosen_rejected_metrics(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([[True, False]]))
    assert all(math.isnan(value) for value in metrics.values()) and len(metrics) == 6
