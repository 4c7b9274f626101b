"""Training-step throughput: our λ-DPO step, padded and packed, against TRL and the paper's way.

(a) ours, padded: each prompt's N responses tokenised once (before training), one forward of
    the B·N prompt + response rows, reference log-probs read from the cache;
(b) ours, packed: the same with ``data.packing: shared_prefix`` (each prompt once, followed by
    its responses, several prompts per row of ``--max-tokens-per-row``);
(c) TRL ``DPOTrainer`` (sigmoid loss) on each prompt's best and worst response under the centroid
    target, with the reference forward every step, and with ``precompute_ref_log_probs`` (the
    precomputation is not timed, as our reference cache is not); ``pip install trl`` (with the
    torch constraint: ``-c constraints/cpu.txt``) to run them;
(d) naive, as the paper's code: per step, each response tokenised and padded once per dimension
    (B·m·N sequences), one forward per response, and the reference forward recomputed every step.

Every variant runs on the same model, prompts and batches, each in its own process so that peak
memory is its own. Prints response tokens/s (the responses each step scores: 4 per prompt for
ours, 2 for TRL), s/step and peak memory.

Length profiles: ``--profile data`` (``--data`` or the synthetic tiny data) or ``--profile
ultrafeedback``: prompts and responses of random words whose token lengths are lognormal, with
the medians of UltraFeedback (binarized) that Wang & Hegde (2024, "Accelerating Direct Preference
Optimization with Prefix Sharing", their table of dataset statistics) publish: a median prompt +
chosen + rejected length of 409 tokens and a median prompt-to-completion ratio of 0.42, read as
prompt / (chosen + rejected): median prompt 121 and median response 144 tokens. They publish no
spread; σ = 0.8 (prompts) and 0.6 (responses) in log space are our assumption.

    python benchmarks/train_throughput.py                 # the tiny default on CPU
    python benchmarks/train_throughput.py --profile ultrafeedback --variants "ours, padded" "ours, packed"
    python benchmarks/train_throughput.py --model smollm2-135m-instruct --lora-r 8 --threads 2 --batch-size 2 \
        --profile ultrafeedback --variants "ours, padded" "ours, packed" "TRL DPO" "TRL DPO, precomputed reference"
    python benchmarks/train_throughput.py --model-config configs/models/llama3.2-1b-shape --keep-vocab \
        --device cuda --batch-size 8 --lora-r 8      # a real-size model, random weights, real vocab
    python benchmarks/train_throughput.py --variants "ours, padded" "ours, λ-conditioned"   # the cost of conditioning
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
from lambda_dpo.data.packing import LayoutSettings
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
from lambda_dpo.precision import autocast_context, resolve_autocast
from lambda_dpo.run_setup import example_texts, seed_everything


PADDED, PACKED, CONDITIONED, NAIVE = "ours, padded", "ours, packed", "ours, λ-conditioned", "naive (paper)"
TRL, TRL_PRECOMPUTED = "TRL DPO", "TRL DPO, precomputed reference"
# UltraFeedback-shaped lengths (module docstring): lognormal token counts, (median, σ in log space).
ULTRAFEEDBACK_PROMPT, ULTRAFEEDBACK_RESPONSE = (121, 0.8), (144, 0.6)
WORDS = ("the", "of", "and", "to", "in", "is", "for", "that", "with", "as", "on", "it", "by", "this", "be", "are", "from", "at",
         "or", "an", "can", "which", "you", "your", "have", "more", "will", "one", "all", "about", "their", "time", "water",
         "people", "first", "example", "because", "answer", "question", "light", "energy", "plant", "city", "number", "music")


def ultrafeedback_shaped(count: int, dimensions, *, seed: int = 0):
    """``count`` prompts with 4 responses of random words, their lengths lognormal as UltraFeedback's
    (:data:`ULTRAFEEDBACK_PROMPT`, :data:`ULTRAFEEDBACK_RESPONSE`), rated 1–5 at random."""
    from lambda_dpo.data.records import ListwiseExample

    rng = np.random.default_rng(seed)

    def text(median_and_sigma, cap):
        median, sigma = median_and_sigma
        length = int(np.clip(rng.lognormal(np.log(median), sigma), 4, cap))
        return " ".join(rng.choice(WORDS, size=length))

    examples = []
    for key in range(count):
        responses = tuple(text(ULTRAFEEDBACK_RESPONSE, 900) for _ in range(4))
        ratings = rng.integers(1, 6, size=(len(dimensions), 4)).astype(float)
        examples.append(ListwiseExample(key, f"ultrafeedback-shaped[{key}]", text(ULTRAFEEDBACK_PROMPT, 900), responses, ratings))
    return examples


def build_data(args):
    """Examples and tokenizer: a pretrained ``--model``'s own tokenizer, or one trained on the data
    for the ``--model-config`` architecture."""
    torch.set_num_threads(args.threads)
    seed_everything(0)
    needed = args.batch_size * (args.steps + args.warmup)
    source = args.data or f"synthetic:{needed}"
    if args.profile == "ultrafeedback":
        examples = ultrafeedback_shaped(needed, args.dimensions)
    else:
        examples, _ = load_examples(source, dimensions=args.dimensions, limit=needed)
    if len(examples) < needed:
        raise SystemExit(f"{source} has {len(examples)} examples; {needed} are needed ({args.steps} + {args.warmup} steps of {args.batch_size})")
    if args.model:
        return examples, load_tokenizer(model_config(args))
    texts = list(example_texts(examples))
    if CONDITIONED in args.variants:  # as `conditioning: prompt` trains it, for every variant of the run alike
        texts += preamble_corpus(args.dimensions, seed=0)
    return examples, train_tokenizer(texts, vocab_size=512)


def model_config(args) -> ModelConfig:
    if args.model:
        return ModelConfig(name_or_path=args.model, device=args.device, dtype=args.dtype, autocast=args.autocast)
    return ModelConfig(name_or_path=args.model_config, random_init=True, device=args.device, dtype=args.dtype, autocast=args.autocast)


def build_model(args, tokenizer, config: ModelConfig | None = None):
    """The model under test (``config``: instead of ``args``' own, e.g. another dtype), LoRA when ``--lora-r``."""
    config = config or model_config(args)
    seed_everything(0)  # random weights alike in every process and every call
    model = load_base_model(config, vocab_size=None if args.model or args.keep_vocab else len(tokenizer))
    if args.lora_r:
        model = add_lora(model, LoraConfig(enabled=True, r=args.lora_r, alpha=2 * args.lora_r))
    return model


def build(args):
    """Examples, tokenizer and the model, in training mode."""
    examples, tokenizer = build_data(args)
    model = build_model(args, tokenizer)
    model.train()
    return examples, tokenizer, model


def batches_of(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_ours(args, conditioned: bool = False, packed: bool = False) -> dict:
    """Our step; ``packed``: in the shared-prefix layout; ``conditioned``: as ``conditioning: prompt``
    trains, each prompt re-encoded per step with its own λ ~ Dir(0.5) in the preamble, the reference
    read from the plain-prompt cache."""
    examples, tokenizer, model = build(args)
    device = next(model.parameters()).device
    encoded = encode_examples(examples, tokenizer, max_prompt_length=args.max_prompt_length, max_length=args.max_length)
    layout = LayoutSettings("shared_prefix" if packed else "none", args.max_tokens_per_row, tokenizer.pad_token_id)
    collator = ListwiseCollator(tokenizer.pad_token_id, layout=layout)
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
        with autocast_context(device, resolve_autocast(args.autocast, device)):
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
                    with autocast_context(device, resolve_autocast(args.autocast, device)):
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


def run_packed(args) -> dict:
    return run_ours(args, packed=True)


def best_and_worst(examples, dimensions) -> list[tuple[int, int]]:
    """Each example's best and worst response under the centroid's mixed target (what our pairwise
    losses take, :func:`lambda_dpo.objective.pairwise_batch`)."""
    from lambda_dpo.loss import best_worst_pairs, mixed_target
    from lambda_dpo.preferences import ratings_to_targets

    ratings = torch.as_tensor(np.stack([e.ratings for e in examples]), dtype=torch.float32)
    targets, target_mask = ratings_to_targets(ratings)
    lambdas = torch.full((len(examples), len(dimensions)), 1 / len(dimensions))
    preference, eligible = mixed_target(targets, lambdas, target_mask=target_mask)
    chosen, rejected, _ = best_worst_pairs(preference, eligible)
    return list(zip(chosen.tolist(), rejected.tolist()))


def run_trl(args, precompute: bool = False) -> dict:
    """TRL's ``DPOTrainer`` (sigmoid) on the same model, prompts and batches, in batch order; only
    the training steps after warm-up are timed."""
    import tempfile

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    examples, tokenizer, model = build(args)
    device = next(model.parameters()).device
    pairs = best_and_worst(examples, args.dimensions)
    as_messages = lambda prompt: [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt  # noqa: E731
    rows = [{"prompt": as_messages(e.prompt), "chosen": [{"role": "assistant", "content": e.responses[c]}],
             "rejected": [{"role": "assistant", "content": e.responses[r]}]} for e, (c, r) in zip(examples, pairs)]
    if not getattr(tokenizer, "chat_template", None):  # the tiny tokenizer: plain text, as our render_prompt writes it
        rows = [{"prompt": render_prompt(e.prompt, tokenizer), "chosen": e.responses[c], "rejected": e.responses[r]} for e, (c, r) in zip(examples, pairs)]

    class InOrder(DPOTrainer):
        def _get_train_sampler(self, *unused, **unused_kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_step_end(self, *unused, **unused_kwargs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())
            if len(self.ends) == args.warmup and device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()

    clock = Clock()
    with tempfile.TemporaryDirectory() as output_dir:
        config = DPOConfig(
            output_dir=output_dir, per_device_train_batch_size=args.batch_size, max_steps=args.warmup + args.steps, learning_rate=1e-4,
            lr_scheduler_type="constant", beta=0.1, loss_type=["sigmoid"], precompute_ref_log_probs=precompute, max_length=args.max_length,
            logging_steps=10**6, save_strategy="no", report_to=[], use_cpu=device.type == "cpu", bf16=device.type == "cuda",
            dataloader_num_workers=0, seed=0, disable_dropout=True,
        )
        # A full fine-tune needs its frozen copy (TRL would load one from the model's path); LoRA's is the adapter switched off.
        reference = None if args.lora_r else copy.deepcopy(model).eval().requires_grad_(False)
        trainer = InOrder(model=model, ref_model=reference, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[clock])
        trainer.train()
    timed_rows = args.batch_size * args.steps
    first = args.batch_size * args.warmup
    encoded = encode_examples(examples[first : first + timed_rows], tokenizer, max_prompt_length=args.max_prompt_length, max_length=args.max_length)
    tokens = sum(len(e.response_ids[c]) + len(e.response_ids[r]) for e, (c, r) in zip(encoded, pairs[first : first + timed_rows]))
    elapsed = clock.ends[-1] - clock.ends[args.warmup - 1]
    return {"tokens_per_second": tokens / elapsed, "seconds_per_step": elapsed / args.steps, "peak_memory_mb": peak_memory_mb(device)}


def run_trl_precomputed(args) -> dict:
    return run_trl(args, precompute=True)


# Each runs in its own spawned process, which imports these functions by name.
VARIANTS = {PADDED: run_ours, PACKED: run_packed, CONDITIONED: run_conditioned, TRL: run_trl, TRL_PRECOMPUTED: run_trl_precomputed, NAIVE: run_naive}


def run_variant(name: str, args, *, isolated: bool = True) -> dict:
    """One variant's figures; ``isolated``: in a spawned process of its own, so that its peak memory
    (and its CUDA context) are its own."""
    if not isolated:
        return VARIANTS[name](args)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(VARIANTS[name], args).result()


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
    parser.add_argument("--profile", choices=("data", "ultrafeedback"), default="data", help="lengths of --data (or the synthetic data), or UltraFeedback-shaped random text")
    parser.add_argument("--max-prompt-length", type=int, help="default 128 (ultrafeedback profile: 512)")
    parser.add_argument("--max-length", type=int, help="default 320 (ultrafeedback profile: 1024)")
    parser.add_argument("--max-tokens-per-row", type=int, default=1024, help="ours, packed: tokens per packed row")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", help="model.dtype: the weights")
    parser.add_argument("--autocast", default="auto", help="model.autocast: the forward's matmuls")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per step (4 responses each)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep-vocab", action="store_true", help="keep the config's vocab size (a real LM head) instead of the 512-token tokenizer's")
    parser.add_argument("--lora-r", type=int, default=0, help="train a LoRA adapter of this rank on all linear layers (0: full fine-tune)")
    parser.add_argument("--variants", nargs="+", default=[PADDED, PACKED, NAIVE], choices=list(VARIANTS))
    args = parser.parse_args(argv)
    long = args.profile == "ultrafeedback"
    args.max_prompt_length = args.max_prompt_length or (512 if long else 128)
    args.max_length = args.max_length or (1024 if long else 320)
    if args.model and args.keep_vocab:
        parser.error("--keep-vocab is for --model-config; a --model keeps its own vocabulary")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    results = {name: run_variant(name, args) for name in args.variants}
    lora = f"LoRA r{args.lora_r}" if args.lora_r else "full fine-tune"
    model = f"{args.model} (pretrained)" if args.model else f"{args.model_config} (random weights)"
    data = "UltraFeedback-shaped lengths" if args.profile == "ultrafeedback" else (args.data or "synthetic data")
    print(f"workload: {model}, {lora}, {data}, {args.batch_size} prompts per step, {args.steps} timed steps, device {args.device}, {args.threads} threads")
    width = max(len(name) for name in results) + 2
    print(f"{'step':<{width}}{'response tokens/s':>20}{'s/step':>10}{'peak memory MB':>16}")
    for name, row in results.items():
        print(f"{name:<{width}}{row['tokens_per_second']:>20,.1f}{row['seconds_per_step']:>10.3f}{row['peak_memory_mb']:>16,.0f}")
    for faster, slower in ((PACKED, PADDED), (PADDED, NAIVE), (PACKED, TRL), (PACKED, TRL_PRECOMPUTED)):
        if {faster, slower} <= results.keys():
            print(f"{faster} / {slower}: {results[faster]['tokens_per_second'] / results[slower]['tokens_per_second']:.2f}× response tokens/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
