"""Prompts whose responses can be rated by rule: a base request plus 0–2 IFEval instructions.

Two recipes (docs/verifiable.md):

- ``v1``: an everyday explanation or how-to (``topics.json``: the request and the key terms a good
  answer mentions), or a two-step arithmetic word problem with its answer and the intermediate
  result of its working; 0–2 instructions.
- ``v2``: explanations as in v1, one-step calculations (``calculation``: their answer and
  operands) and short factual questions (``fact``: ``facts.json``, the accepted answers); 1–2
  instructions on every prompt. The kinds and their difficulty were calibrated on SmolLM2-135M so
  that every dimension has responses that differ (``benchmarks/verifiable_calibration.py``).

Instructions come from the IFEval checkers that lm-eval ships and that run offline (those needing
nltk's downloadable sentence tokenizer are left out). Each prompt carries a :class:`Verification`:
everything its verifiers need, stored in the listwise record so that generations can be scored
later (``evaluate --generate``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable

import numpy as np

EXPLANATION = "explanation"
ARITHMETIC = "arithmetic"  # v1: a two-step word problem
CALCULATION = "calculation"  # v2: one step, its operands named in the prompt
FACT = "fact"  # v2: a question with a short accepted answer
KINDS = (EXPLANATION, ARITHMETIC, CALCULATION, FACT)
RECIPES = ("v1", "v2")

# Arguments are drawn so that a 135M model can follow each instruction within ~100 words.
_GENERIC_KEYWORDS = ("important", "example", "simple", "first", "because", "usually", "result", "easy")
_FORBIDDEN_WORDS = ("very", "really", "just", "also", "thing", "basically", "actually", "so")
_END_PHRASES = ("Is there anything else I can help with?", "Any other questions?")

INSTRUCTION_ARGUMENTS: dict[str, Callable[[np.random.Generator], dict]] = {
    "change_case:english_lowercase": lambda rng: {},
    "change_case:english_capital": lambda rng: {},
    "punctuation:no_comma": lambda rng: {},
    "length_constraints:number_words": lambda rng: (
        {"relation": "less than", "num_words": int(rng.choice([15, 25, 40]))}
        if rng.random() < 0.5
        else {"relation": "at least", "num_words": int(rng.choice([40, 60]))}
    ),
    "detectable_format:number_bullet_lists": lambda rng: {"num_bullets": int(rng.integers(2, 5))},
    "detectable_format:title": lambda rng: {},
    "startend:end_checker": lambda rng: {"end_phrase": str(rng.choice(_END_PHRASES))},
    "detectable_content:postscript": lambda rng: {"postscript_marker": "P.S."},
    "keywords:existence": lambda rng: {"keywords": sorted(rng.choice(_GENERIC_KEYWORDS, size=int(rng.integers(1, 3)), replace=False).tolist())},
    "keywords:forbidden_words": lambda rng: {"forbidden_words": sorted(rng.choice(_FORBIDDEN_WORDS, size=2, replace=False).tolist())},
    "startend:quotation": lambda rng: {},
    "detectable_format:number_highlighted_sections": lambda rng: {"num_highlights": int(rng.integers(1, 3))},
    "detectable_content:number_placeholders": lambda rng: {"num_placeholders": 1},
    "length_constraints:number_paragraphs": lambda rng: {"num_paragraphs": 2},
}

# Pairs that no response can satisfy together (case rules against fixed mixed-case phrases,
# two rules about how the response ends).
_CONFLICTS = [
    {"change_case:english_lowercase", "change_case:english_capital"},
    {"change_case:english_lowercase", "startend:end_checker"},
    {"change_case:english_lowercase", "detectable_content:postscript"},
    {"change_case:english_capital", "startend:end_checker"},
    {"change_case:english_capital", "keywords:existence"},
    {"startend:quotation", "detectable_format:title"},
    {"startend:quotation", "startend:end_checker"},
    {"startend:quotation", "detectable_content:postscript"},
    {"startend:end_checker", "detectable_content:postscript"},
]


def conflicts(first: str, second: str) -> bool:
    return first == second or {first, second} in _CONFLICTS


@dataclass(frozen=True)
class Instruction:
    """One IFEval instruction: its registry id and the arguments of its ``build_description``."""

    id: str
    kwargs: dict = field(default_factory=dict)

    def text(self) -> str:
        from lambda_dpo.verifiable.ifeval import ifeval_checker

        return ifeval_checker(self).build_description(**self.kwargs)


@dataclass(frozen=True)
class Verification:
    """What a prompt's responses are checked against.

    kind: one of :data:`KINDS`.
    key_points: explanation and fact: terms a detailed answer mentions (matched as word prefixes);
        arithmetic: the intermediate results of the working; calculation: its operands (which its
        correctness rule skips; it has no detail score).
    answer: the arithmetic or calculation answer (an integer); a fact's accepted answers (strings).
    task: which template made a calculation (``multiply``, ``add``, …); None for the other kinds.
    """

    kind: str
    instructions: tuple[Instruction, ...] = ()
    key_points: tuple[str, ...] = ()
    answer: int | tuple[str, ...] | None = None
    task: str | None = None

    @property
    def family(self) -> str:
        """The kind, or for a calculation its task: what solve rates are reported by."""
        return self.task or self.kind

    def to_json(self) -> dict:
        data = {
            "kind": self.kind,
            "instructions": [{"id": i.id, "kwargs": i.kwargs} for i in self.instructions],
            "key_points": list(self.key_points),
            "answer": list(self.answer) if isinstance(self.answer, tuple) else self.answer,
        }
        return data | ({"task": self.task} if self.task else {})

    @classmethod
    def from_json(cls, data: dict, *, where: str = "verification") -> "Verification":
        """Parse a record's ``verification`` field; errors name ``where`` and the bad key."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: must be an object, got {type(data).__name__}")
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"{where}.kind: must be one of {', '.join(KINDS)}, got {kind!r}")
        instructions = []
        for index, item in enumerate(data.get("instructions") or []):
            if not isinstance(item, dict) or item.get("id") not in INSTRUCTION_ARGUMENTS:
                known = ", ".join(sorted(INSTRUCTION_ARGUMENTS))
                raise ValueError(f"{where}.instructions[{index}]: unknown instruction {item!r}; known: {known}")
            instructions.append(Instruction(item["id"], dict(item.get("kwargs") or {})))
        answer = data.get("answer")
        if kind in (ARITHMETIC, CALCULATION) and (not isinstance(answer, int) or isinstance(answer, bool)):
            raise ValueError(f"{where}.answer: {'an' if kind == ARITHMETIC else 'a'} {kind} prompt needs an integer answer, got {answer!r}")
        if kind == FACT:
            if not isinstance(answer, list) or not answer or not all(isinstance(item, str) and item.strip() for item in answer):
                raise ValueError(f"{where}.answer: a fact needs a list of accepted answers (non-empty strings), got {answer!r}")
            answer = tuple(answer)
        key_points = data.get("key_points") or []
        if not all(isinstance(point, str) and point for point in key_points):
            raise ValueError(f"{where}.key_points: must be non-empty strings, got {key_points!r}")
        task = data.get("task")
        if task is not None and not isinstance(task, str):
            raise ValueError(f"{where}.task: must be a string, got {task!r}")
        return cls(kind, tuple(instructions), tuple(key_points), answer, task)


@dataclass(frozen=True)
class VerifiablePrompt:
    prompt: str
    verification: Verification


def load_topics() -> list[dict]:
    """The shipped everyday requests with their key terms."""
    return json.loads(resources.files("lambda_dpo.verifiable").joinpath("topics.json").read_text())


def load_facts() -> list[dict]:
    """The shipped short factual questions with their accepted answers."""
    return json.loads(resources.files("lambda_dpo.verifiable").joinpath("facts.json").read_text())


_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ivy", "Jonas", "Kira", "Liam", "Maya", "Noah", "Omar", "Priya")


def _word_problem(rng: np.random.Generator) -> tuple[str, int, int]:
    """``(question, intermediate result, answer)`` of a two-step problem with whole numbers."""
    name = str(rng.choice(_NAMES))
    a, b = int(rng.integers(2, 10)), int(rng.integers(3, 13))
    product = a * b
    template = int(rng.integers(0, 8))
    if template == 0:
        c = int(rng.integers(1, product))
        return f"{name} has {a} boxes with {b} pencils in each and gives away {c} pencils. How many pencils does {name} have left?", product, product - c
    if template == 1:
        c = int(rng.integers(product + 1, product + 40))
        return f"{name} buys {a} notebooks at {b} dollars each and pays with {c} dollars. How much change does {name} get?", product, c - product
    if template == 2:
        c = int(rng.integers(1, 30))
        return f"{name} reads {a} pages a day for {b} days and then reads {c} more pages. How many pages does {name} read in total?", product, product + c
    if template == 3:
        c = int(rng.integers(1, product))
        return f"A classroom has {a} rows of {b} chairs, and {c} chairs are empty. How many chairs are taken?", product, product - c
    if template == 4:
        c = int(rng.integers(1, 50))
        return f"A train travels {b} kilometres every hour for {a} hours and then {c} more kilometres. How far does it travel in all?", product, product + c
    if template == 5:
        c = int(rng.integers(1, product))
        return f"{name} saves {b} dollars a week for {a} weeks and then spends {c} dollars. How many dollars are left?", product, product - c
    if template == 6:
        c = int(rng.integers(1, product))
        return f"There are {a} baskets with {b} apples in each, and {c} apples are rotten. How many good apples are there?", product, product - c
    total = a * b  # (x + y) shared among a friends: x + y = a·b, so each gets b
    x = int(rng.integers(1, total))
    return f"{name} has {x} stickers, gets {total - x} more, and shares them equally among {a} friends. How many stickers does each friend get?", total, b


# Calibrated on SmolLM2-135M (benchmarks/verifiable_calibration.py, 32 prompts × 4 samples each):
# rated right in 33% (multiply, 2–9) and 27% (add, 1–9) of samples. Word problems of the same
# sums (20%), subtractions (6%) and two-digit sums (2%) were too hard to teach correctness on.
CALCULATION_TASKS = ("multiply", "add")


def _calculation(rng: np.random.Generator) -> tuple[str, str, tuple[int, int], int]:
    """``(task, question, operands, answer)`` of a one-step calculation of :data:`CALCULATION_TASKS`."""
    task = str(rng.choice(CALCULATION_TASKS))
    if task == "multiply":
        a, b = int(rng.integers(2, 10)), int(rng.integers(2, 10))
        return task, f"What is {a} times {b}?", (a, b), a * b
    a, b = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    return task, f"What is {a} + {b}?", (a, b), a + b


def sample_instructions(rng: np.random.Generator, count: int) -> tuple[Instruction, ...]:
    """``count`` distinct instructions, no two in conflict, with sampled arguments."""
    chosen: list[str] = []
    for identifier in rng.permutation(sorted(INSTRUCTION_ARGUMENTS)):
        if len(chosen) == count:
            break
        if not any(conflicts(identifier, other) for other in chosen):
            chosen.append(str(identifier))
    return tuple(Instruction(identifier, INSTRUCTION_ARGUMENTS[identifier](rng)) for identifier in chosen)


def prompt_at(index: int, *, seed: int, topics: list[dict], arithmetic_share: float = 0.4, instruction_counts=(0.25, 0.45, 0.30)) -> VerifiablePrompt:
    """Candidate prompt ``index``: it depends only on (seed, index).

    instruction_counts: probabilities of 0, 1 and 2 instructions.
    """
    rng = np.random.default_rng([seed, index])
    instructions = sample_instructions(rng, int(rng.choice(len(instruction_counts), p=instruction_counts)))
    if rng.random() < arithmetic_share:
        question, intermediate, answer = _word_problem(rng)
        verification = Verification(ARITHMETIC, instructions, (str(intermediate),), answer)
    else:
        topic = topics[int(rng.integers(len(topics)))]
        question = topic["request"]
        verification = Verification(EXPLANATION, instructions, tuple(topic["key_terms"]))
    return VerifiablePrompt(" ".join([question, *(instruction.text() for instruction in instructions)]), verification)


# Recipe v2's mix: the share of each kind, and of 1 and 2 instructions (every prompt has one, so
# instruction following can be learned on all of them).
V2_KINDS = {EXPLANATION: 0.3, CALCULATION: 0.35, FACT: 0.35}
V2_INSTRUCTION_COUNTS = (0.0, 0.7, 0.3)


def prompt_at_v2(index: int, *, seed: int, topics: list[dict], facts: list[dict]) -> VerifiablePrompt:
    """Candidate prompt ``index`` of recipe v2: it depends only on (seed, index)."""
    rng = np.random.default_rng([seed, index, 2])
    instructions = sample_instructions(rng, int(rng.choice(len(V2_INSTRUCTION_COUNTS), p=V2_INSTRUCTION_COUNTS)))
    kind = str(rng.choice(list(V2_KINDS), p=list(V2_KINDS.values())))
    if kind == CALCULATION:
        task, question, operands, answer = _calculation(rng)
        verification = Verification(CALCULATION, instructions, tuple(str(n) for n in operands), answer, task)
    elif kind == FACT:
        fact = facts[int(rng.integers(len(facts)))]
        question = fact["question"]
        verification = Verification(FACT, instructions, tuple(fact["key_terms"]), tuple(fact["answers"]))
    else:
        topic = topics[int(rng.integers(len(topics)))]
        question = topic["request"]
        verification = Verification(EXPLANATION, instructions, tuple(topic["key_terms"]))
    return VerifiablePrompt(" ".join([question, *(instruction.text() for instruction in instructions)]), verification)


def build_prompts(num_prompts: int, *, seed: int = 0, recipe: str = "v1") -> list[VerifiablePrompt]:
    """The first ``num_prompts`` distinct candidate prompts of ``seed`` under ``recipe`` (a repeat
    would put the same prompt in both the training and the held-out split)."""
    if num_prompts <= 0:
        raise ValueError(f"num_prompts must be positive, got {num_prompts}")
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    topics, facts = load_topics(), load_facts()
    candidate_at = (lambda i: prompt_at(i, seed=seed, topics=topics)) if recipe == "v1" else (lambda i: prompt_at_v2(i, seed=seed, topics=topics, facts=facts))
    prompts: dict[str, VerifiablePrompt] = {}
    index = 0
    while len(prompts) < num_prompts:
        candidate = candidate_at(index)
        prompts.setdefault(candidate.prompt, candidate)
        index += 1
        if index > 20 * num_prompts:
            raise ValueError(f"only {len(prompts)} distinct prompts can be made; ask for fewer than {num_prompts}")
    return list(prompts.values())
