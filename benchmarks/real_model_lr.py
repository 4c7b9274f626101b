"""How far a short LoRA λ-DPO run moves SmolLM2-135M-Instruct, by learning rate.

For each learning rate: ``--steps`` λ-DPO steps from the real-model config on the shipped
verifiable set, then greedy answers to plain questions that have one right answer, compared with
the untrained model's, and the held-out ranking metrics. A safe learning rate moves the ranking of
the verifiable dimensions and leaves plain answers right. Resumable: a finished learning rate's
run is read back, not trained again.

    python benchmarks/real_model_lr.py --learning-rates 1e-3 2e-4 5e-5 --steps 30
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

QUESTIONS = [
    ("What is the capital of France?", r"\bParis\b"),
    ("How many days are there in a week?", r"\b(7|seven)\b"),
    ("Which planet do we live on?", r"\bEarth\b"),
    ("What is 2 + 3?", r"\b(5|five)\b"),
    ("What colour is the sky on a clear day?", r"\bblue\b"),
]
CONFIG = "configs/train/smollm2-135m-verifiable.yaml"
SHOWN = ("top1_accuracy/mixed", "reward_accuracy/conciseness", "reward_margin")


def answers(model, tokenizer, render) -> list[str]:
    from lambda_dpo.decoding import generate_batch

    return [g.text for g in generate_batch(model, tokenizer, [render(q) for q, _ in QUESTIONS], max_new_tokens=48)]


def right(texts: list[str]) -> list[bool]:
    return [bool(re.search(pattern, text, flags=re.IGNORECASE)) for text, (_, pattern) in zip(texts, QUESTIONS)]


def reuse_reference(out: Path, run_dir: Path) -> None:
    """Copy an earlier probe's reference log-probs: the same data and model give the same values
    (the cache's fingerprint checks it), and on 2 cores they take minutes to compute."""
    import shutil

    earlier = sorted(out.glob("lr-*/reference_logps"))
    if earlier and not (run_dir / "reference_logps").exists():
        shutil.copytree(earlier[0], run_dir / "reference_logps")


def probe(learning_rate: float, args, out: Path) -> dict:
    """Train (or read back) one learning rate's run and answer the plain questions with it."""
    from lambda_dpo.config import load_config
    from lambda_dpo.data.encoding import render_prompt
    from lambda_dpo.checkpoint_eval import load_checkpoint_policy
    from lambda_dpo.checkpoints import latest_checkpoint
    from lambda_dpo.train import train
    from lambda_dpo.train_config import TrainConfig

    run_dir = out / f"lr-{learning_rate:g}"
    result_file = run_dir / "probe.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    overrides = [f"output_dir={run_dir}", f"optim.learning_rate={learning_rate}", f"optim.max_steps={args.steps}", f"data.limit={args.limit}",
                 "eval.generate=false", f"save_every={args.steps}", *args.overrides]
    reuse_reference(out, run_dir)
    metrics = train(load_config(TrainConfig, args.config, overrides)).metrics
    _, tokenizer, model = load_checkpoint_policy(latest_checkpoint(run_dir))
    texts = answers(model, tokenizer, lambda question: render_prompt(question, tokenizer))
    row = {"learning_rate": learning_rate, "answers": texts, "right": right(texts), "metrics": {name: metrics[name] for name in SHOWN}}
    result_file.write_text(json.dumps(row, indent=2))
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-3, 2e-4, 5e-5])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--limit", type=int, default=240, help="prompts of the set to use (15%% of them held out)")
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--out", default="runs/benchmarks/real-model-lr")
    parser.add_argument("overrides", nargs="*", help="more key=value overrides of the train config")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from lambda_dpo.data.encoding import render_prompt
    from lambda_dpo.verifiable.build import load_model

    tokenizer, base = load_model("smollm2-135m-instruct")
    before = answers(base, tokenizer, lambda question: render_prompt(question, tokenizer))
    rows = [probe(rate, args, out) for rate in args.learning_rates]
    print(f"{args.steps} LoRA λ-DPO steps per learning rate; plain questions answered greedily (48 new tokens)")
    print(f"{'learning rate':<15}{'right':>7}{'changed':>9}" + "".join(f"{name:>30}" for name in SHOWN) + "   answer to the first question")
    print(f"{'(untrained)':<15}{sum(right(before)):>5}/5{'':>9}" + "".join(f"{'':>30}" for _ in SHOWN) + f"   {before[0][:60]!r}")
    for row in rows:
        changed = sum(a != b for a, b in zip(row["answers"], before))
        values = "".join(f"{row['metrics'][name]:>30.4f}" for name in SHOWN)
        print(f"{row['learning_rate']:<15g}{sum(row['right']):>5}/5{changed:>7}/5{values}   {row['answers'][0][:60]!r}")
    (out / "summary.json").write_text(json.dumps({"untrained": before, "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
