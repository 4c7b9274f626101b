"""Rule-based verifiers: compliant responses score higher than broken ones, in every dimension."""

import pytest

from lambda_dpo.verifiable.prompts import ARITHMETIC, CALCULATION, EXPLANATION, FACT, Instruction, Verification
from lambda_dpo.verifiable.verifiers import conciseness, count_words, mixed_score, numbers_in, rating, score_response

SKY = Verification(EXPLANATION, (Instruction("change_case:english_lowercase"), Instruction("punctuation:no_comma")), ("sunlight", "scatter", "wavelength", "atmosphere"))
APPLES = Verification(ARITHMETIC, (Instruction("length_constraints:number_words", {"relation": "less than", "num_words": 25}),), ("28",), 10)


def test_a_compliant_explanation_beats_a_broken_one_on_every_dimension_that_applies():
    good = "sunlight is scattered by the atmosphere and short wavelengths scatter most so the sky looks blue."
    broken = "The Sky, As Everyone Knows, Is Blue Because It Is. " * 6
    ours, theirs = score_response(good, SKY), score_response(broken, SKY)
    assert ours == {"instruction_following": 1.0, "correctness": None, "conciseness": 1.0, "detail": 1.0}
    assert theirs["instruction_following"] == 0.0 and theirs["detail"] == 0.0 and theirs["conciseness"] < 1.0


def test_word_problems_are_checked_on_their_last_number_and_their_working():
    assert score_response("4 baskets of 7 make 28 apples; 28 - 18 = 10.", APPLES) == {
        "instruction_following": 1.0, "correctness": 1.0, "conciseness": 1.0, "detail": 1.0,
    }
    assert score_response("The answer is 10, not 12.", APPLES)["correctness"] == 0.5  # right number, not the final one
    assert score_response("There are 11 good apples.", APPLES)["correctness"] == 0.0
    assert numbers_in("It costs 1,200 dollars, or -3.5 each, item2") == [1200.0, -3.5]


def test_conciseness_falls_linearly_from_20_to_100_words_and_ratings_are_on_a_1_to_5_scale():
    assert conciseness("word " * 20) == 1.0 and conciseness("word " * 100) == 0.0
    assert conciseness("word " * 60) == pytest.approx(0.5)
    assert [rating(s) for s in (0.0, 0.25, 0.5, 1.0, None)] == [1, 2, 3, 5, None]
    assert count_words("It's a dog-eat-dog world.") == 7  # IFEval's count: runs of word characters


def test_an_empty_response_scores_zero_wherever_a_dimension_applies():
    assert score_response("  ", APPLES) == {"instruction_following": 0.0, "correctness": 0.0, "conciseness": 0.0, "detail": 0.0}
    assert score_response("...", SKY)["correctness"] is None


def test_the_mixed_score_renormalises_lambda_over_the_dimensions_that_apply():
    scores = {"instruction_following": 1.0, "correctness": None, "conciseness": 0.5, "detail": 0.0}
    weights = {"instruction_following": 0.25, "correctness": 0.25, "conciseness": 0.25, "detail": 0.25}
    assert mixed_score(scores, weights) == pytest.approx(0.5)
    assert mixed_score(scores, {"correctness": 1.0}) is None


def test_a_calculation_is_right_on_the_first_number_that_is_not_an_operand_and_has_no_detail():
    times = Verification(CALCULATION, (Instruction("punctuation:no_comma"),), ("6", "3"), 18, "multiply")
    assert score_response("6 times 3 is 18.", times)["correctness"] == 1.0  # restating the operands is not an answer
    assert score_response("18", times)["correctness"] == 1.0
    assert score_response("It is 21. Or maybe 18.", times)["correctness"] == 0.5
    assert score_response("It is 63.", times) == {"instruction_following": 1.0, "correctness": 0.0, "conciseness": 1.0, "detail": None}


def test_a_fact_is_right_when_an_accepted_answer_is_named_and_detailed_by_its_related_terms():
    legs = Verification(FACT, (), ("insect", "body"), ("6", "six"))
    assert score_response("An insect has six legs on its body.", legs) == {"instruction_following": None, "correctness": 1.0, "conciseness": 1.0, "detail": 1.0}
    assert score_response("Insects have 6 legs.", legs)["correctness"] == 1.0
    assert score_response("About 16 of them.", legs)["correctness"] == 0.0  # a number counts as a whole word only
    assert score_response("Butterflies!", Verification(FACT, (), (), ("butterfl",)))["correctness"] == 1.0  # a word prefix
