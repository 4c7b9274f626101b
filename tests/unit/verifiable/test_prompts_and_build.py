"""Verifiable prompts are deterministic and satisfiable; the build resumes and refuses mixed settings."""

import dataclasses
import json

import pytest

from lambda_dpo.verifiable.build import BuildSettings, batches_of, rated_record, read_partial, solve_rates
from lambda_dpo.verifiable.prompts import (
    ARITHMETIC, CALCULATION, CALCULATION_TASKS, EXPLANATION, FACT, INSTRUCTION_ARGUMENTS, V2_KINDS, Verification, build_prompts, conflicts,
)


def test_prompts_are_distinct_deterministic_and_a_prefix_of_a_longer_set():
    prompts = build_prompts(60, seed=3)
    assert len({p.prompt for p in prompts}) == 60
    assert prompts == build_prompts(60, seed=3)
    assert build_prompts(80, seed=3)[:60] == prompts  # prompt i does not depend on how many are built
    assert build_prompts(60, seed=4) != prompts


def test_each_prompt_has_at_most_two_compatible_instructions_and_its_checkable_facts():
    for prompt in build_prompts(200):
        ids = [i.id for i in prompt.verification.instructions]
        assert len(ids) <= 2 and not (len(ids) == 2 and conflicts(*ids))
        assert all(i in INSTRUCTION_ARGUMENTS for i in ids)
        if prompt.verification.kind == ARITHMETIC:
            assert isinstance(prompt.verification.answer, int) and prompt.verification.answer >= 0
            (intermediate,) = prompt.verification.key_points
            assert intermediate.isdigit() and int(intermediate) != prompt.verification.answer  # the working differs from the result
        else:
            assert len(prompt.verification.key_points) == 4
        assert Verification.from_json(json.loads(json.dumps(prompt.verification.to_json()))) == prompt.verification


def test_a_bad_verification_is_named():
    with pytest.raises(ValueError, match=r"record x\[3\]: verification.kind"):
        Verification.from_json({"kind": "poem"}, where="record x[3]: verification")
    with pytest.raises(ValueError, match=r"instructions\[0\]: unknown instruction"):
        Verification.from_json({"kind": "explanation", "instructions": [{"id": "language:response_language"}]})
    with pytest.raises(ValueError, match="answer"):
        Verification.from_json({"kind": "arithmetic", "answer": "ten"})


def test_a_rated_record_is_a_listwise_record_with_its_verification():
    prompt = build_prompts(1)[0]
    record = rated_record(prompt, ["Short answer.", "word " * 120], [True, False])
    assert record["prompt"] == prompt.prompt and record["finished"] == [True, False]
    assert record["ratings"]["conciseness"] == [5, 1]
    assert Verification.from_json(record["verification"]) == prompt.verification


def test_an_interrupted_build_resumes_only_with_its_own_settings(tmp_path):
    settings = BuildSettings(num_prompts=4, prompts_per_batch=2)
    partial = tmp_path / "set.jsonl.partial"
    done = {"batch": 0, "responses": [["a", "b", "c", "d"]] * 2, "finished": [[True] * 4] * 2}
    partial.write_text(json.dumps({"settings": dataclasses.asdict(settings)}) + "\n" + json.dumps(done) + "\n" + '{"batch": 1, "respo')
    assert read_partial(partial, settings) == {0: done}  # the line cut by the kill is dropped
    with pytest.raises(ValueError, match="was started with other settings"):
        read_partial(partial, dataclasses.replace(settings, temperature=0.5))
    assert [len(chunk) for chunk in batches_of(settings, build_prompts(5))] == [2, 2, 1]
    assert settings.batch_seed(1) == BuildSettings(num_prompts=9, prompts_per_batch=2).batch_seed(1) != settings.batch_seed(2)
    with pytest.raises(ValueError, match="responses must be at least 2"):
        BuildSettings(responses=1)


def test_v2_prompts_mix_calculations_facts_and_explanations_each_with_one_or_two_instructions():
    prompts = build_prompts(300, seed=0, recipe="v2")
    assert build_prompts(300, seed=0) != prompts and build_prompts(320, seed=0, recipe="v2")[:300] == prompts
    kinds = [p.verification.kind for p in prompts]
    for kind, share in V2_KINDS.items():
        assert abs(kinds.count(kind) / len(prompts) - share) < 0.08
    for prompt in prompts:
        verification = prompt.verification
        assert 1 <= len(verification.instructions) <= 2
        assert Verification.from_json(json.loads(json.dumps(verification.to_json()))) == verification
        if verification.kind == CALCULATION:
            a, b = map(int, verification.key_points)
            assert verification.task in CALCULATION_TASKS and f"{a}" in prompt.prompt and f"{b}" in prompt.prompt
            assert verification.answer == (a * b if verification.task == "multiply" else a + b) and verification.answer not in (a, b)
        elif verification.kind == FACT:
            assert verification.answer and all(isinstance(answer, str) for answer in verification.answer) and verification.key_points
    assert {p.verification.task for p in prompts if p.verification.kind == CALCULATION} == set(CALCULATION_TASKS)


def test_a_bad_v2_verification_is_named():
    with pytest.raises(ValueError, match="a calculation prompt needs an integer answer"):
        Verification.from_json({"kind": "calculation", "answer": True, "task": "add"})
    with pytest.raises(ValueError, match="a fact needs a list of accepted answers"):
        Verification.from_json({"kind": "fact", "answer": "Paris"})
    with pytest.raises(ValueError, match="a fact needs a list of accepted answers"):
        Verification.from_json({"kind": "fact", "answer": ["Paris", " "]})
    with pytest.raises(ValueError, match=r"verification.task: must be a string"):
        Verification.from_json({"kind": "calculation", "answer": 12, "task": 3})
    with pytest.raises(ValueError, match="recipe must be one of v1, v2"):
        build_prompts(3, recipe="v3")
    with pytest.raises(ValueError, match="recipe must be one of v1, v2"):
        BuildSettings(recipe="v3")


def test_solve_rates_count_fully_right_responses_by_calculation_task_and_kind():
    multiply = Verification(CALCULATION, (), ("6", "7"), 42, "multiply")
    fact = Verification(FACT, (), ("Seine",), ("Paris",))
    records = [
        {"verification": multiply.to_json(), "ratings": {"correctness": [5, 1, 3, 5]}},
        {"verification": fact.to_json(), "ratings": {"correctness": [5, 1, 1, 1]}},
        {"verification": Verification(EXPLANATION, (), ("a",)).to_json(), "ratings": {"correctness": [None] * 4}},
    ]
    assert solve_rates(records) == {"fact": (1, 4, 0.25), "multiply": (1, 4, 0.5)}


def test_the_shipped_facts_are_distinct_questions_that_do_not_name_their_own_answer():
    from lambda_dpo.verifiable.prompts import load_facts
    from lambda_dpo.verifiable.verifiers import names_answer

    facts = load_facts()
    assert len({fact["question"] for fact in facts}) == len(facts) >= 50
    for fact in facts:
        assert fact["answers"] and fact["key_terms"], fact["question"]
        assert not names_answer(fact["question"], fact["answers"]), fact["question"]  # restating the question would be rated right
