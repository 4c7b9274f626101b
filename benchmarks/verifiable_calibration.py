"""How often the model answers each candidate kind of question right: the calibration of recipe v2.

Verifiable set v2 rates correctness on problems SmolLM2-135M solves in 20–70% of its samples, so
that a prompt's four samples usually differ in correctness (the signal a preference loss learns
from). This samples ``--prompts`` questions of each candidate task, with the v2 mix of IFEval
instructions attached as in the set, ``--responses`` times each at the build's temperature and
top-p, rates them with the set's own verifier, and prints per candidate: the share of samples
rated right, the share half right, and the share of prompts whose samples differ.

    python benchmarks/verifiable_calibration.py                      # every candidate, 32 prompts each (about 12 min on 2 cores)
    python benchmarks/verifiable_calibration.py --tasks multiply fact --prompts 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np

NAMES = ("Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo")


def _operands(low: int, high: int):
    return lambda rng: (int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1)))


def candidates() -> dict:
    """task → rng → (question, operands, answer); ``fact`` draws from the shipped facts."""
    def arithmetic(template, operands, combine):
        def make(rng):
            a, b = operands(rng)
            return template.format(a=a, b=b, name=str(rng.choice(NAMES))), (a, b), combine(a, b)
        return make

    def subtract(rng):
        a = int(rng.integers(5, 20))
        b = int(rng.integers(1, a))
        return f"{rng.choice(NAMES)} has {a} apples and gives away {b}. How many apples are left?", (a, b), a - b

    return {
        "multiply": arithmetic("What is {a} times {b}?", _operands(2, 9), lambda a, b: a * b),
        "multiply_small": arithmetic("What is {a} times {b}?", _operands(2, 5), lambda a, b: a * b),
        "add": arithmetic("What is {a} + {b}?", _operands(1, 9), lambda a, b: a + b),
        "add_small": arithmetic("What is {a} + {b}?", _operands(1, 5), lambda a, b: a + b),
        "add_two_digit": arithmetic("What is {a} + {b}?", _operands(10, 89), lambda a, b: a + b),
        "word_add": arithmetic("{name} has {a} apples and gets {b} more. How many apples does {name} have now?", _operands(2, 9), lambda a, b: a + b),
        "word_subtract": subtract,
        "fact": None,
    }


def rate(task: str, make, rng, facts):
    """One candidate prompt's question and its scorer (response → score in [0, 1])."""
    from lambda_dpo.verifiable.prompts import CALCULATION, FACT, Verification
    from lambda_dpo.verifiable.verifiers import correctness_of

    if task == "fact":
        fact = facts[int(rng.integers(len(facts)))]
        verification = Verification(FACT, answer=tuple(fact["answers"]))
        return fact["question"], lambda response: correctness_of(response, verification)
    question, operands, answer = make(rng)
    verification = Verification(CALCULATION, key_points=tuple(str(n) for n in operands), answer=answer, task=task)
    return question, lambda response: correctness_of(response, verification)


def calibrate(task: str, make, *, prompts: int, responses: int, seed: int, tokenizer, model, settings) -> dict:
    import torch

    from lambda_dpo.data.encoding import render_prompt
    from lambda_dpo.decoding import generate_batch
    from lambda_dpo.verifiable.prompts import V2_INSTRUCTION_COUNTS, load_facts, sample_instructions

    rng = np.random.default_rng([seed, len(task)])
    facts = load_facts()
    texts, scorers = [], []
    for _ in range(prompts):
        question, scorer = rate(task, make, rng, facts)
        instructions = sample_instructions(rng, int(rng.choice(len(V2_INSTRUCTION_COUNTS), p=V2_INSTRUCTION_COUNTS)))
        texts.append(render_prompt(" ".join([question, *(i.text() for i in instructions)]), tokenizer))
        scorers.append(scorer)
    torch.manual_seed(seed)
    started = time.perf_counter()
    generations = generate_batch(model, tokenizer, texts, max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                 top_p=settings.top_p, num_return_sequences=responses)
    scores = np.array([scorers[i // responses](g.text) for i, g in enumerate(generations)]).reshape(prompts, responses)
    return {"right": float((scores == 1).mean()), "half": float((scores == 0.5).mean()),
            "differ": float(np.mean([len(set(row)) > 1 for row in scores])), "seconds": time.perf_counter() - started}


def main(argv=None) -> int:
    import torch

    from lambda_dpo.verifiable.build import BuildSettings, load_model

    tasks = candidates()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=list(tasks), default=list(tasks))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--responses", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = BuildSettings()
    torch.set_num_threads(settings.threads)
    tokenizer, model = load_model(settings.model)
    print(f"| task | rated right | half right | prompts whose samples differ |  ({args.prompts} prompts × {args.responses} samples, T {settings.temperature}, top-p {settings.top_p})")
    print("| --- | ---: | ---: | ---: |")
    for task in args.tasks:
        found = calibrate(task, tasks[task], prompts=args.prompts, responses=args.responses, seed=args.seed, tokenizer=tokenizer, model=model, settings=settings)
        print(f"| {task} | {found['right']:.0%} | {found['half']:.0%} | {found['differ']:.0%} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
