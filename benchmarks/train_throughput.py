"""Training-step throughput: our λ-DPO step against the paper's way of doing it, on one workload.

(a) ours: each prompt's N responses tokenised once (before training), one forward of the B·N
    sequences, reference log-probs read from the cache;
(b) naive, as the paper's code: per step, each response tokenised and padded once per dimension
    (B·m·N sequences), one forward per response, and the reference forward recomputed every step
    (a frozen copy of the model).

Both run the same loss on the same batches and model; each variant runs in its own process so
that peak memory is its own. Prints response tokens/s, peak memory and the speed ratio.

    python benchmarks/train_throughput.py                 # the tiny default on CPU
    python benchmarks/train_throughput.py --model-config PATH --device cuda --batch-size 4
    python benchmarks/train_throughput.py --model-config configs/models/llama3.2-1b-shape --keep-vocab \
        --device cuda --batch-size 8 --lora-r 8      # a real-size model, random weights, real vocab
    python benchmarks/train_throughput.py --variants ours "ours, λ-conditioned"   # the cost of conditioning: prompt
    python benchmarks/train_throughput.py --model smollm2-135m-instruct --lora-r 8 --threads 2 --batch-size 2 \
        --data lambda_dpo/data/examples/verifiable-smollm2-135m.jsonl \
        --dimensions instruction_following,correctness,conciseness,detail   # a pretrained model, its own tokenizer, real text
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from lambda_dpo.conditioning import PromptConditioner, preamble_corpus
from lambda_dpo.data.collate import IGNORE_INDEX, ListwiseCollator
from lambda_dpo.data.encoding import encode_examples, render_prompt
from lambda_dpo.data.loading import load_examples
from lambda_dpo.data.records import DEFAULT_DIMENSIONS
from lambda_dpo.loss import lambda_dpo_loss
from lambda_dpo.metrics import peak_memory_mb
from lambda_dpo.modeling import (
    LoraConfig,
    ModelConfig,
    ReferenceCache,
    add_lora,
    load_base_model,
    load_tokenizer,
    response_logps,
    sequence_logps,
    to_device,
)
from lambda_dpo.tiny import train_tokenizer
from lambda_dpo.train import autocast_context, example_texts, seed_everything


CONDITIONED = "ours, λ-conditioned"


def build(args):
    """Examples, tokenizer and model: a pretrained ``--model`` with its own tokenizer, or the
    ``--model-config`` architecture with random weights and a tokenizer trained on the data."""
    torch.set_num_threads(args.threads)
    seed_everything(0)
    needed = args.batch_size * (args.steps + args.warmup)
    source = args.data or f"synthetic:{needed}"
    examples, _ = load_examples(source, dimensions=args.dimensions, limit=needed)
    if len(examples) < needed:
        raise SystemExit(f"{source} has {len(examples)} examples; {needed} are needed ({args.steps} + {args.warmup} steps of {args.batch_size})")
    if args.model:
        config = ModelConfig(name_or_path=args.model, device=args.device, dtype=args.dtype)
        tokenizer = load_tokenizer(config)
        model = load_base_model(config)
    else:
        texts = list(example_texts(examples))
        if CONDITIONED in args.variants:  # as `conditioning: prompt` trains it, for every variant of the run alike
            texts += preamble_corpus(args.dimensions, seed=0)
        tokenizer = train_tokenizer(texts, vocab_size=512)
        config = ModelConfig(name_or_path=args.model_config, random_init=True, device=args.device, dtype=args.dtype)
        model = load_base_model(config, vocab_size=None if args.keep_vocab else len(tokenizer))
    if args.lora_r:
        model = add_lora(model, LoraConfig(enabled=True, r=args.lora_r, alpha=2 * args.lora_r))
    model.train()
    return examples, tokenizer, model


def batches_of(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_ours(args, conditioned: bool = False) -> dict:
    """Our step; ``conditioned``: as ``conditioning: prompt`` trains, each prompt re-encoded per step
    with its own λ ~ Dir(0.5) in the preamble, the reference read from the plain-prompt cache."""
    examples, tokenizer, model = build(args)
    device = next(model.parameters()).device
    encoded = encode_examples(examples, tokenizer, max_prompt_length=args.max_prompt_length, max_length=args.max_length)
    collator = ListwiseCollator(tokenizer.pad_token_id)
    cache = ReferenceCache(None, "benchmark")
    slots = max(len(e.response_ids) for e in encoded)
    cache.fill(model, (collator(chunk) for chunk in batches_of(encoded, args.batch_size)), len(encoded), slots, device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    m = len(args.dimensions)
    centroid = torch.full((args.batch_size, m), 1 / m, device=device)
    conditioner = PromptConditioner(examples, tokenizer, args.dimensions, max_prompt_length=args.max_prompt_length) if conditioned else None
    draws = np.random.default_rng(0)

    def step(chunk):
        if conditioner is None:
            lambdas = centroid
        else:
            weights = draws.dirichlet(np.full(m, 0.5), len(chunk))
            chunk = conditioner(chunk, weights)
            lambdas = torch.as_tensor(weights, dtype=torch.float32, device=device)
        batch = to_device(collator(chunk), device)
        reference = cache.lookup(batch["example_keys"], batch["response_mask"].shape[1], "mean").to(device)
        with autocast_context(device):
            logps = response_logps(model, batch)
        output = lambda_dpo_loss(logps.mean, reference, batch["targets"], lambdas, beta=0.1, response_mask=batch["response_mask"], target_mask=batch["target_mask"])
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return int(logps.tokens.sum())

    return timed(step, batches_of(encoded, args.batch_size), args, device)


def run_naive(args) -> dict:
    examples, tokenizer, model = build(args)
    device = next(model.parameters()).device
    reference_model = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    collator = ListwiseCollator(tokenizer.pad_token_id)
    encoded = encode_examples(examples, tokenizer, max_prompt_length=args.max_prompt_length, max_length=args.max_length)

    def sequence_logp(network, ids, labels):
        logits = network(input_ids=ids[None], use_cache=False).logits
        sums, counts = sequence_logps(logits, labels[None])
        return (sums / counts.clamp(min=1))[0]

    def step(chunk):
        targets = collator([encoded[e.key] for e in chunk])  # the targets only; the text is redone below
        policy_rows, reference_rows, tokens = [], [], 0
        for example in chunk:
            prompt = render_prompt(example.prompt, tokenizer)
            for _dimension in args.dimensions:
                # Tokenised and padded once per dimension, as the paper's code does.
                texts = [prompt + response + tokenizer.eos_token for response in example.responses]
                encoded_texts = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
                prompt_length = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
                labels = encoded_texts["input_ids"].masked_fill(encoded_texts["attention_mask"] == 0, IGNORE_INDEX)
                labels[:, :prompt_length] = IGNORE_INDEX
                for ids, row_labels in zip(encoded_texts["input_ids"].to(device), labels.to(device)):
                    with autocast_context(device):
                        policy_rows.append(sequence_logp(model, ids, row_labels))
                        with torch.no_grad():
                            reference_rows.append(sequence_logp(reference_model, ids, row_labels))
            tokens += sum(len(r) for r in encoded[example.key].response_ids)
        m, n = len(args.dimensions), len(chunk[0].responses)
        policy = torch.stack(policy_rows).view(len(chunk), m, n)
        reference = torch.stack(reference_rows).view(len(chunk), m, n)
        batch = to_device(targets, device)
        masks = dict(response_mask=batch["response_mask"], target_mask=batch["target_mask"])
        # Each dimension's loss on that dimension's own forward, weighted by the centroid λ.
        loss = sum(
            lambda_dpo_loss(policy[:, k], reference[:, k], batch["targets"], torch.eye(m, device=device)[k].expand(len(chunk), m), beta=0.1, **masks).loss / m
            for k in range(m)
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return tokens

    return timed(step, batches_of(examples, args.batch_size), args, device)


def run_conditioned(args) -> dict:
    return run_ours(args, conditioned=True)


# Each runs in its own spawned process, which imports these functions by name.
VARIANTS = {"ours": run_ours, CONDITIONED: run_conditioned, "naive (paper)": run_naive}


def timed(step, batches, args, device) -> dict:
    for chunk in batches[: args.warmup]:
        step(chunk)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    tokens = sum(step(chunk) for chunk in batches[args.warmup : args.warmup + args.steps])
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {"tokens_per_second": tokens / elapsed, "seconds_per_step": elapsed / args.steps, "peak_memory_mb": peak_memory_mb(device)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-config", default="configs/models/tiny-llama", help="directory with a transformers config.json (random weights)")
    source.add_argument("--model", help="a pretrained model (registered name, directory or hub id): its own weights and tokenizer")
    parser.add_argument("--data", help="preference data (default: the synthetic tiny data)")
    parser.add_argument("--dimensions", type=lambda text: text.split(","), default=list(DEFAULT_DIMENSIONS), help="comma-separated rating dimensions of --data")
    parser.add_argument("--max-prompt-length", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=320)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per step (4 responses each)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep-vocab", action="store_true", help="keep the config's vocab size (a real LM head) instead of the 512-token tokenizer's")
    parser.add_argument("--lora-r", type=int, default=0, help="train a LoRA adapter of this rank on all linear layers (0: full fine-tune)")
    parser.add_argument("--variants", nargs="+", default=["ours", "naive (paper)"], choices=list(VARIANTS))
    args = parser.parse_args(argv)
    if args.model and args.keep_vocab:
        parser.error("--keep-vocab is for --model-config; a --model keeps its own vocabulary")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    results = {}
    context = multiprocessing.get_context("spawn")
    for name in args.variants:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            results[name] = pool.submit(VARIANTS[name], args).result()
    lora = f"LoRA r{args.lora_r}" if args.lora_r else "full fine-tune"
    model = f"{args.model} (pretrained)" if args.model else f"{args.model_config} (random weights)"
    print(f"workload: {model}, {lora}, {args.data or 'synthetic data'}, {args.batch_size} prompts per step, {args.steps} timed steps, device {args.device}")
    print(f"{'step':<22}{'response tokens/s':>20}{'s/step':>10}{'peak memory MB':>16}")
    for name, row in results.items():
        print(f"{name:<22}{row['tokens_per_second']:>20,.0f}{row['seconds_per_step']:>10.3f}{row['peak_memory_mb']:>16,.0f}")
    if {"ours", "naive (paper)"} <= results.keys():
        ratio = results["ours"]["tokens_per_second"] / results["naive (paper)"]["tokens_per_second"]
        print(f"speed-up: {ratio:.1f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
