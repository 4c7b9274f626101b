"""Verifiable prompts are deterministic and satisfiable; the build resumes and refuses mixed settings."""

import dataclasses
import json

import pytest

from lambda_dpo.verifiable.build import BuildSettings, batches_of, rated_record, read_partial
from lambda_dpo.verifiable.prompts import ARITHMETIC, INSTRUCTION_ARGUMENTS, Verification, build_prompts, conflicts


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
