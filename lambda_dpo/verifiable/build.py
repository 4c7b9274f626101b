"""``lambda-dpo data build-verifiable``: listwise preference data from a model's own samples, rated by rule.

Each prompt gets ``responses`` samples from the model, made in fixed batches of
``prompts_per_batch`` prompts. Each batch is seeded by (seed, batch), so a batch can be rebuilt
alone and comes out the same. Finished batches are appended to ``OUT.partial``, and an
interrupted build resumes from there. At the end every response is rated
(:mod:`lambda_dpo.verifiable.verifiers`), and the listwise JSONL is written in one rename.
Each record also carries its ``verification``, so generations can be scored later.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from lambda_dpo.verifiable.prompts import RECIPES, Verification, VerifiablePrompt, build_prompts
from lambda_dpo.verifiable.verifiers import VERIFIABLE_DIMENSIONS, rating, score_response


@dataclass
class BuildSettings:
    """Everything that decides the built file (saved in ``OUT.partial`` and checked on resume)."""

    model: str = "smollm2-135m-instruct"
    num_prompts: int = 640
    seed: int = 0
    recipe: str = "v1"  # which prompts (lambda_dpo.verifiable.prompts.RECIPES)
    responses: int = 4  # samples per prompt
    prompts_per_batch: int = 8
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 128
    threads: int = 2  # torch threads: sampled tokens depend on the float rounding, which depends on this

    def __post_init__(self) -> None:
        for name in ("num_prompts", "responses", "prompts_per_batch", "max_new_tokens", "threads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if self.responses < 2:
            raise ValueError(f"responses must be at least 2 (a ranking needs two), got {self.responses}")
        if not 0 < self.temperature or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature must be > 0 and top_p in (0, 1]; got {self.temperature}, {self.top_p}")

    def batch_seed(self, batch: int) -> int:
        return int(np.random.SeedSequence([self.seed, batch]).generate_state(1)[0])


# The sets shipped in the package, and the settings that built them (tests/real_model rebuilds a batch of each):
#   lambda-dpo data build-verifiable --out lambda_dpo/data/examples/verifiable-smollm2-135m.jsonl --num-prompts 800 --seed 0
#   lambda-dpo data build-verifiable --recipe v2 --out lambda_dpo/data/examples/verifiable-v2-smollm2-135m.jsonl --num-prompts 1200 --prompts-per-batch 32
EXAMPLES = Path(__file__).parents[1] / "data" / "examples"
SHIPPED_SET = EXAMPLES / "verifiable-smollm2-135m.jsonl"
SHIPPED_SETTINGS = BuildSettings(num_prompts=800, seed=0)
SHIPPED_SET_V2 = EXAMPLES / "verifiable-v2-smollm2-135m.jsonl"
SHIPPED_SETTINGS_V2 = BuildSettings(num_prompts=1200, seed=0, recipe="v2", prompts_per_batch=32)


def rated_record(prompt: VerifiablePrompt, responses: Sequence[str], finished: Sequence[bool]) -> dict:
    """One listwise record: the prompt, its responses, their ratings and what they were checked against."""
    scores = [score_response(response, prompt.verification) for response in responses]
    return {
        "prompt": prompt.prompt,
        "responses": list(responses),
        "ratings": {name: [rating(score[name]) for score in scores] for name in VERIFIABLE_DIMENSIONS},
        "verification": prompt.verification.to_json(),
        "finished": list(finished),
    }


def load_model(name: str):
    """Tokenizer and model (fp32, eval mode) for sampling."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lambda_dpo.pretrained import resolve_model_source

    source = resolve_model_source(name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()


def sample_batch(settings: BuildSettings, batch: int, prompts: Sequence[VerifiablePrompt], tokenizer, model) -> dict:
    """The responses of one batch of prompts (what ``OUT.partial`` stores per batch)."""
    from lambda_dpo.data.encoding import render_prompt
    from lambda_dpo.decoding import generate_batch

    torch.manual_seed(settings.batch_seed(batch))
    generations = generate_batch(
        model, tokenizer, [render_prompt(p.prompt, tokenizer) for p in prompts], max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature, top_p=settings.top_p, num_return_sequences=settings.responses,
    )
    n = settings.responses
    return {
        "batch": batch,
        "responses": [[g.text for g in generations[i * n : (i + 1) * n]] for i in range(len(prompts))],
        "finished": [[g.finished for g in generations[i * n : (i + 1) * n]] for i in range(len(prompts))],
    }


def batches_of(settings: BuildSettings, prompts: Sequence[VerifiablePrompt]) -> list[list[VerifiablePrompt]]:
    size = settings.prompts_per_batch
    return [list(prompts[i : i + size]) for i in range(0, len(prompts), size)]


def read_partial(path: Path, settings: BuildSettings) -> dict[int, dict]:
    """The batches an interrupted build finished, after checking it used the same settings."""
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    header = json.loads(lines[0]) if lines else {}
    if header.get("settings") != dataclasses.asdict(settings):
        raise ValueError(f"{path} was started with other settings ({header.get('settings')}); "
                         "rerun with those settings to resume it, or delete it to start over")
    done = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # the line being written when the build was killed
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: damaged line; delete the file to start over") from None
        done[entry["batch"]] = entry
    return done


def build_verifiable(settings: BuildSettings, out: Path, *, on_batch: Callable[[int, int], None] = lambda done, total: None) -> list[dict]:
    """Sample, rate and write the set to ``out``; return its records.

    ``on_batch(done, total)`` is called as batches finish (a progress display).
    """
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    prompts = build_prompts(settings.num_prompts, seed=settings.seed, recipe=settings.recipe)
    batches = batches_of(settings, prompts)
    done = read_partial(partial, settings)
    on_batch(len(done), len(batches))
    if len(done) < len(batches):
        torch.set_num_threads(settings.threads)
        tokenizer, model = load_model(settings.model)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not partial.exists():
            partial.write_text(json.dumps({"settings": dataclasses.asdict(settings)}) + "\n")
        with partial.open("a") as stream:
            for batch, chunk in enumerate(batches):
                if batch in done:
                    continue
                done[batch] = sample_batch(settings, batch, chunk, tokenizer, model)
                stream.write(json.dumps(done[batch]) + "\n")
                stream.flush()
                on_batch(len(done), len(batches))
    records = [
        rated_record(prompt, responses, finished)
        for batch, chunk in enumerate(batches)
        for prompt, responses, finished in zip(chunk, done[batch]["responses"], done[batch]["finished"])
    ]
    written = out.with_name(out.name + ".tmp")
    written.write_text("".join(json.dumps(record) + "\n" for record in records))
    os.replace(written, out)
    partial.unlink()
    return records


def solve_rates(records: Sequence[dict]) -> dict[str, tuple[int, int, float]]:
    """By prompt family (a calculation's task, or the kind), the prompts with a correctness rating,
    the responses among them, and the share of those rated right (score 1, rating 5)."""
    found: dict[str, list[int]] = {}
    for number, record in enumerate(records):
        family = Verification.from_json(record["verification"], where=f"record {number}: verification").family
        rated = [r for r in record["ratings"]["correctness"] if r is not None]
        if rated:
            counts = found.setdefault(family, [0, 0, 0])
            counts[0] += 1
            counts[1] += len(rated)
            counts[2] += sum(r == rating(1.0) for r in rated)
    return {family: (prompts, responses, right / responses) for family, (prompts, responses, right) in sorted(found.items())}
