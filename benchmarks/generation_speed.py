"""Scoring by generation, the old path against the new one, on the same prompts in one invocation.

- **old**: what the final evaluation did before: prompts sorted by their text length, batches of 8
  left-padded through transformers' ``generate``, the LoRA adapter unmerged.
- **new**: :func:`lambda_dpo.decoding.greedy_generations`: prompts grouped by token length,
  ``eval.generation_batch_size`` rows a batch, finished rows dropped from the batch and the KV
  cache, a preallocated cache, the adapter merged into a copy.

Both decode greedily to ``eval.max_new_tokens`` on the config's held-out prompts (or a checkpoint's),
with the config's base model or a checkpoint's policy,
on the config's ``threads``. It prints each path's wall time, generated tokens and tokens/s, the
speed-up, and how many responses are token-for-token identical (the first that differs, if any).
``--json PATH`` also writes those figures.

    python benchmarks/generation_speed.py                                    # the base model on the real-model config's held-out prompts
    python benchmarks/generation_speed.py --checkpoint runs/smollm2-verifiable/checkpoints/step-30   # its own held-out prompts
    python benchmarks/generation_speed.py --checkpoint CKPT --config configs/train/smollm2-135m-verifiable.yaml   # a trained adapter on v1's 120
    python benchmarks/generation_speed.py --config configs/train/tiny.yaml --limit 16 --max-new-tokens 16   # seconds, the tiny model
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

OLD_BATCH_SIZE = 8  # the final evaluation's eval.batch_size before the new path
DEFAULT_CONFIG = "configs/train/smollm2-135m-verifiable.yaml"  # the first real-model config: its 120 held-out prompts


def old_generations(model, tokenizer, texts, *, max_new_tokens):
    """The previous scoring path: text-length order, batches of 8 through ``generate``."""
    from lambda_dpo.decoding import generate_batch

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    results = [None] * len(texts)
    for start in range(0, len(order), OLD_BATCH_SIZE):
        chunk = order[start : start + OLD_BATCH_SIZE]
        for index, generation in zip(chunk, generate_batch(model, tokenizer, [texts[i] for i in chunk], max_new_tokens=max_new_tokens)):
            results[index] = generation
    return results


def timed(function):
    started = time.perf_counter()
    generations = function()
    seconds = time.perf_counter() - started
    tokens = sum(g.new_tokens for g in generations)
    return generations, {"seconds": seconds, "new_tokens": tokens, "tokens_per_second": tokens / seconds, "prompts": len(generations)}


def prompts_and_model(config_path: str | None, checkpoint: str | None, overrides: list[str]):
    """``(config, tokenizer, model, texts)``: the held-out prompts as the final evaluation renders
    them. The model is the checkpoint's policy, else the config's base model; the prompts are the
    config's held-out split, else (a checkpoint alone) the checkpoint's own."""
    from lambda_dpo.checkpoint_eval import load_checkpoint_policy, open_checkpoint
    from lambda_dpo.modeling import load_base_model, load_tokenizer
    from lambda_dpo.run_setup import load_datasets, prompt_renderer, use_threads
    from lambda_dpo.train_config import load_train_config

    if checkpoint is not None:
        _, own, _ = open_checkpoint(Path(checkpoint))
        config = load_train_config(config_path, overrides) if config_path else own
        _, tokenizer, model = load_checkpoint_policy(checkpoint)
    else:
        config = load_train_config(config_path or DEFAULT_CONFIG, overrides)
        tokenizer = load_tokenizer(config.model)
        model = load_base_model(config.model, vocab_size=len(tokenizer)).eval()
    use_threads(config)
    _, examples = load_datasets(config)
    render = prompt_renderer(config, tokenizer, config.eval.mixed_lambda(len(config.data.dimensions)))
    return config, tokenizer, model, [render(example) for example in examples]


def compare(old, new) -> dict:
    same = [a.text == b.text and a.new_tokens == b.new_tokens for a, b in zip(old, new)]
    first = next((i for i, s in enumerate(same) if not s), None)
    return {"identical": sum(same), "of": len(same), "first_difference": None if first is None else {"index": first, "old": old[first].text, "new": new[first].text}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help=f"whose held-out prompts (default: {DEFAULT_CONFIG}, or with --checkpoint alone the checkpoint's own)")
    parser.add_argument("--checkpoint", help="a trained checkpoint to decode with (default: the config's base model)")
    parser.add_argument("--limit", type=int, help="the first N held-out prompts only")
    parser.add_argument("--max-new-tokens", type=int, help="default: the config's eval.max_new_tokens")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides of the config")
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    from lambda_dpo.decoding import greedy_generations

    hf_logging.disable_progress_bar()
    config, tokenizer, model, texts = prompts_and_model(args.config, args.checkpoint, args.overrides)
    texts = texts[: args.limit]
    max_new_tokens = args.max_new_tokens or config.eval.max_new_tokens
    print(f"{len(texts)} held-out prompts, greedy, at most {max_new_tokens} new tokens, {config.threads or 'default'} threads", flush=True)
    old, old_figures = timed(lambda: old_generations(model, tokenizer, texts, max_new_tokens=max_new_tokens))
    print(f"old: {old_figures['seconds']:.1f} s, {old_figures['new_tokens']} tokens, {old_figures['tokens_per_second']:.1f} tokens/s", flush=True)
    batch_size = config.eval.generation_batch_size
    new, new_figures = timed(lambda: greedy_generations(model, tokenizer, texts, max_new_tokens=max_new_tokens, batch_size=batch_size))
    print(f"new (batches of up to {batch_size}): {new_figures['seconds']:.1f} s, {new_figures['new_tokens']} tokens, {new_figures['tokens_per_second']:.1f} tokens/s")
    agreement = compare(old, new)
    speedup = new_figures["tokens_per_second"] / old_figures["tokens_per_second"]
    print(f"speed-up {speedup:.2f}x; identical responses: {agreement['identical']} of {agreement['of']}")
    if agreement["first_difference"]:
        print(f"first difference (prompt {agreement['first_difference']['index']}):\n  old: {agreement['first_difference']['old']!r}\n  new: {agreement['first_difference']['new']!r}")
    if args.json:
        figures = {"config": args.config, "checkpoint": args.checkpoint, "max_new_tokens": max_new_tokens, "old": old_figures, "new": new_figures | {"batch_size": batch_size},
                   "speedup": speedup, **agreement}
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if agreement["identical"] == agreement["of"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
