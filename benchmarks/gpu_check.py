"""The device check: what the CPU cannot measure, in one command, the day a GPU is lent.

On each workload (SmolLM2-135M: the pretrained model when it is fetched, else its shape with random
weights; a Llama-3.2-1B-shaped model with random weights; both with their real vocabulary), in
bf16, on UltraFeedback-shaped prompts (benchmarks/train_throughput.py, ``--profile ultrafeedback``):

1. for a LoRA r8 and a full fine-tune, and for ours padded, ours packed and TRL DPO with
   precomputed reference log-probs, on the same prompts and batches, each in a process of its own:
   response tokens/s, s/step, peak memory and MFU against the card's bf16 dense peak;
2. bf16 against fp32 log-probs, padded and packed (:func:`lambda_dpo.modeling.bf16_agreement`),
   next to the tolerance derived from the model's own LM head (docs/training.md, "Precision");
3. FlexAttention against the block-bucketed SDPA tree attention on one packed batch: the largest
   log-prob difference and the time of a forward and backward pass, compiled once first.

MFU counts the model FLOPs of the tokens each variant forwards, padding excluded: 6 per parameter
per token for a full fine-tune (forward, input and weight gradients), 4 for LoRA (the frozen weights
get no gradient); the decoder's parameters for every token forwarded, the LM head's (d·V) only for
the tokens it projects (ours: response positions; TRL: every position). Attention's own FLOPs
(sequences ≤ 1,024 tokens) and LoRA's parameters are left out. Ours padded forwards each prompt once
per response, ours packed once per prompt, TRL once per chosen and once per rejected response.

A failing part prints one line and the check goes on; ``--json`` is written after every part, so a
check stopped at its limit keeps what it measured.

    python benchmarks/gpu_check.py --json gpu-check.json       # on the GPU (about 8 min on one H100)
    python benchmarks/gpu_check.py --smoke                      # on CPU, tiny sizes, seconds
    python benchmarks/gpu_check.py --smoke --flex               # with FlexAttention compiled on CPU (about 30 s more)

On a lent device machine, the packages its image lacks (trl, datasets, omegaconf …) travel as wheels:
benchmarks/README.md ("The device check") gives the commands.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as throughput  # noqa: E402

from lambda_dpo.data.collate import ListwiseCollator  # noqa: E402
from lambda_dpo.data.encoding import encode_examples  # noqa: E402
from lambda_dpo.data.packing import PADDING, PROMPT_BRANCH, LayoutSettings  # noqa: E402
from lambda_dpo.modeling import BF16_PRECISIONS, bf16_agreement, chunked_token_logps, response_logps, to_device  # noqa: E402
from lambda_dpo.precision import autocast_context, resolve_autocast  # noqa: E402
from lambda_dpo.pretrained import is_fetched  # noqa: E402

VARIANTS = (throughput.PADDED, throughput.PACKED, throughput.TRL_PRECOMPUTED)
FINETUNES = (("LoRA r8", 8), ("full", 0))
SMOLLM2 = "smollm2-135m-instruct"
# bf16 dense tensor-core peaks (TFLOP/s, no sparsity) from NVIDIA's data sheets; the first name
# contained in torch.cuda.get_device_name() wins, so the more specific names come first.
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0), ("A100", 312.0),
                    ("L40S", 362.0), ("L4", 121.0))
AGREEMENT_PROMPTS = 8
FLEX_REPEATS = 3


def workloads(smoke: bool) -> dict[str, list[str]]:
    """Name → the train_throughput arguments that select the model."""
    if smoke:
        return {"tiny (random init)": ["--model-config", "configs/models/tiny-llama"]}
    smollm2 = ["--model", SMOLLM2] if is_fetched(SMOLLM2) else ["--model-config", "configs/models/smollm2-135m-shape", "--keep-vocab"]
    return {"SmolLM2-135M" + ("" if is_fetched(SMOLLM2) else " (shape, random init)"): smollm2,
            "Llama-3.2-1B shape (random init)": ["--model-config", "configs/models/llama3.2-1b-shape", "--keep-vocab"]}


def throughput_args(model_args: list[str], options, *, lora_r: int = 0, dtype: str = "bfloat16"):
    sizes = ["--batch-size", "2", "--steps", "1", "--warmup", "1", "--max-prompt-length", "32", "--max-length", "64"] if options.smoke else \
        ["--batch-size", str(options.batch_size), "--steps", str(options.steps), "--warmup", str(options.warmup)]
    autocast = "none" if dtype == "float32" else "auto"
    return throughput.parse_args([*model_args, *sizes, "--profile", "ultrafeedback", "--device", options.device, "--dtype", dtype, "--autocast", autocast,
                                  "--lora-r", str(lora_r), "--threads", str(options.threads), "--variants", *VARIANTS])


@dataclasses.dataclass
class StepFlops:
    """What one timed step of each variant costs in model FLOPs (module docstring): the tokens it
    forwards through the decoder and projects through the LM head, and the parameters of each."""

    forwarded: dict[str, float]
    projected: dict[str, float]
    decoder_parameters: int
    head_parameters: int

    def mfu(self, variant: str, seconds_per_step: float, *, lora: bool, peak_tflops: float | None) -> float | None:
        if peak_tflops is None:
            return None
        flops = (4 if lora else 6) * (self.decoder_parameters * self.forwarded[variant] + self.head_parameters * self.projected[variant])
        return flops / seconds_per_step / (peak_tflops * 1e12)


def step_flops(args) -> StepFlops:
    """The variants' token counts per step on the timed prompts (the batches after the warm-up), and
    the workload's parameter counts."""
    examples, tokenizer = throughput.build_data(args)
    first, timed = args.batch_size * args.warmup, args.batch_size * args.steps
    pairs = throughput.best_and_worst(examples, args.dimensions)[first : first + timed]
    encoded = encode_examples(examples[first : first + timed], tokenizer, max_prompt_length=args.max_prompt_length, max_length=args.max_length)
    responses = sum(len(r) for e in encoded for r in e.response_ids)
    padded = sum(len(e.prompt_ids) * len(e.response_ids) for e in encoded) + responses
    packed = sum(len(e.prompt_ids) for e in encoded) + responses
    pairwise = sum(2 * len(e.prompt_ids) + len(e.response_ids[c]) + len(e.response_ids[r]) for e, (c, r) in zip(encoded, pairs))
    per_step = lambda tokens: tokens / args.steps  # noqa: E731
    decoder, head = parameter_counts(args, None if args.model or args.keep_vocab else len(tokenizer))
    return StepFlops(
        forwarded={throughput.PADDED: per_step(padded), throughput.PACKED: per_step(packed), throughput.TRL_PRECOMPUTED: per_step(pairwise)},
        projected={throughput.PADDED: per_step(responses), throughput.PACKED: per_step(responses), throughput.TRL_PRECOMPUTED: per_step(pairwise)},
        decoder_parameters=decoder, head_parameters=head,
    )


def parameter_counts(args, vocab_size: int | None) -> tuple[int, int]:
    """``(decoder parameters without the embeddings, LM head parameters d·V)`` of the workload's
    architecture (``vocab_size``: instead of its config's), counted on the meta device (no memory)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from lambda_dpo.pretrained import resolve_model_source

    config = AutoConfig.from_pretrained(resolve_model_source(args.model) if args.model else args.model_config)
    config.vocab_size = vocab_size or config.vocab_size
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    embeddings = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())  # tied weights are one parameter
    untied_head = 0 if head is embeddings else head.numel()
    return total - embeddings.numel() - untied_head, head.numel()


def card_bf16_peak(name: str) -> tuple[float, str] | None:
    """``(TFLOP/s, the table's name for the card)`` for a ``torch.cuda.get_device_name()``, or None."""
    return next(((peak, marker) for marker, peak in BF16_PEAK_TFLOPS if marker in name), None)


def bf16_peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    """The card's bf16 dense peak and where it came from; None on CPU or an unknown card."""
    if override:
        return override, f"{override:g} TFLOP/s (--peak-tflops)"
    if device.type != "cuda":
        return None, "n/a on CPU"
    name = torch.cuda.get_device_name(device)
    known = card_bf16_peak(name)
    if known is None:
        return None, f"unknown for {name}: pass --peak-tflops"
    return known[0], f"{known[0]:g} TFLOP/s, bf16 dense, NVIDIA's data sheet for {known[1]} ({name})"


def agreement(model_args: list[str], options) -> dict:
    """bf16 against fp32 on :data:`AGREEMENT_PROMPTS` prompts, for each of :data:`BF16_PRECISIONS`."""
    args = throughput_args(model_args, options, dtype="float32")
    examples, tokenizer = throughput.build_data(args)
    model = throughput.build_model(args, tokenizer).eval()
    encoded = encode_examples(examples[:AGREEMENT_PROMPTS], tokenizer, max_prompt_length=args.max_prompt_length, max_length=args.max_length)
    batch = ListwiseCollator(tokenizer.pad_token_id)(encoded)
    return {precision: bf16_agreement(model, batch, tokenizer.pad_token_id, precision, max_tokens_per_row=args.max_tokens_per_row) for precision in BF16_PRECISIONS}


FLEX_ATTENTION = "lambda_dpo_flex"


def register_flex_attention():
    """A transformers attention function that runs FlexAttention with the ``flex_block_mask`` the call carries."""
    from torch.nn.attention.flex_attention import flex_attention
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    compiled = torch.compile(flex_attention, dynamic=False)

    def attention(module, query, key, value, attention_mask=None, *, scaling=None, flex_block_mask=None, **unused):
        out = compiled(query, key, value, block_mask=flex_block_mask, scale=scaling, enable_gqa=query.shape[1] != key.shape[1])
        return out.transpose(1, 2).contiguous(), None

    AttentionInterface.register(FLEX_ATTENTION, attention)
    AttentionMaskInterface.register(FLEX_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def tree_mask_mod(layout):
    """The shared-prefix layout's visibility (:func:`lambda_dpo.data.packing.attends`) as a FlexAttention ``mask_mod``."""
    segments, branches = layout.segments, layout.branches

    def visible(b, h, q, k):
        same_prompt = segments[b, q] == segments[b, k]
        branch = (branches[b, k] == PROMPT_BRANCH) | (branches[b, q] == branches[b, k])
        allowed = same_prompt & branch & (segments[b, k] != PADDING) & (k <= q)
        return allowed | ((segments[b, q] == PADDING) & (q == k))

    return visible


def tree_block_mask(layout):
    from torch.nn.attention.flex_attention import create_block_mask

    rows, length = layout.segments.shape
    return create_block_mask(tree_mask_mod(layout), B=rows, H=None, Q_LEN=length, KV_LEN=length, device=layout.segments.device)


def flex_against_tree(model_args: list[str], options) -> dict:
    """FlexAttention and the tree attention on one packed batch: max |Δ mean log-prob| and the seconds
    of a forward and backward pass each (a forward on CPU), after one untimed pass that compiles."""
    args = throughput_args(model_args, options)
    examples, tokenizer = throughput.build_data(args)
    model = throughput.build_model(args, tokenizer).train()
    device = next(model.parameters()).device
    encoded = encode_examples(examples[: args.batch_size], tokenizer, max_prompt_length=args.max_prompt_length, max_length=args.max_length)
    settings = LayoutSettings("shared_prefix", args.max_tokens_per_row, tokenizer.pad_token_id)
    batch = {**to_device(ListwiseCollator(tokenizer.pad_token_id)(encoded), device), "layout": settings}
    layout = settings.of(batch).to(device)
    register_flex_attention()
    flex_model = copy.deepcopy(model)
    flex_model.config._attn_implementation = FLEX_ATTENTION
    unused_mask = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=device)  # 4-D: transformers builds no mask of its own

    def flex_logps():  # the layout and its block mask built in the pass, as the tree path builds its plan
        layout = settings.of(batch).to(device)
        block_mask = tree_block_mask(layout)
        hidden = flex_model.get_decoder()(input_ids=layout.input_ids, attention_mask=unused_mask, position_ids=layout.position_ids, use_cache=False,
                                          flex_block_mask=block_mask).last_hidden_state
        return chunked_token_logps(flex_model.get_output_embeddings(), hidden[layout.rows, layout.positions], layout.targets)

    def tree_logps():
        logps = response_logps(model, batch)
        return logps.sum[batch["response_mask"]]

    backward = device.type == "cuda"  # FlexAttention has no backward on CPU

    def timed_pass(function) -> tuple[torch.Tensor, float, float]:
        def one_pass():
            logps = function()
            if backward:
                logps.sum().backward()
            return logps

        with torch.set_grad_enabled(backward):
            started = time.perf_counter()
            first = one_pass()
            synchronize(device)
            first_seconds = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(FLEX_REPEATS):
                one_pass()
            synchronize(device)
        return first.detach(), first_seconds, (time.perf_counter() - started) / FLEX_REPEATS

    with autocast_context(device, resolve_autocast(args.autocast, device)):
        tree, tree_first, tree_seconds = timed_pass(tree_logps)
        flex_tokens, flex_first, flex_seconds = timed_pass(flex_logps)
    sums = torch.zeros(layout.num_responses, device=device).index_add(0, layout.owners, flex_tokens.float())
    flex = sums.view(batch["response_mask"].shape)[batch["response_mask"]]
    counts = batch["response_lengths"][batch["response_mask"]].clamp(min=1).float()
    return {"max_abs_mean_logp_gap": float(((flex - tree.float()) / counts).abs().max()), "tree_seconds": tree_seconds, "flex_seconds": flex_seconds,
            "flex_first_pass_seconds": flex_first, "tree_first_pass_seconds": tree_first, "speedup": tree_seconds / flex_seconds,
            "timed": "forward and backward" if backward else "forward (no FlexAttention backward on CPU)"}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Report:
    """The check's results, printed as they come and written to ``--json`` after each."""

    def __init__(self, path: str | None, header: dict):
        self.path = Path(path) if path else None
        self.results = {**header, "throughput": [], "bf16_agreement": {}, "flex_attention": {}, "errors": []}
        self.save()

    def save(self) -> None:
        if self.path:
            self.path.write_text(json.dumps(self.results, indent=2) + "\n")

    def attempt(self, what: str, function):
        """``function()``, or None after one line naming what failed and why."""
        try:
            return function()
        except Exception as error:  # noqa: BLE001 - one part's failure must not cost the others
            line = f"{what}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            print(f"  failed: {line}", flush=True)
            self.results["errors"].append(line)
            self.save()
            return None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the tiny model on CPU, tiny sizes, in this process: seconds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per step (4 responses each)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (CPU runs)")
    parser.add_argument("--peak-tflops", type=float, help="the card's bf16 dense peak, when its name is not in the table")
    parser.add_argument("--flex", action=argparse.BooleanOptionalAction, default=None, help="compare FlexAttention (default: on CUDA only)")
    parser.add_argument("--json", help="write the results here")
    options = parser.parse_args(argv)
    if options.smoke:
        options.device = "cpu"
    if options.flex is None:
        options.flex = options.device.startswith("cuda")
    return options


def main(argv=None) -> int:
    options = parse_args(argv)
    device = torch.device(options.device)
    peak, peak_source = bf16_peak_tflops(device, options.peak_tflops)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    report = Report(options.json, {"device": card, "torch": torch.__version__, "bf16_peak": peak_source})
    print(f"device check on {card}, torch {torch.__version__}; bf16 peak: {peak_source}", flush=True)
    started = time.perf_counter()
    for workload, model_args in workloads(options.smoke).items():
        for finetune, lora_r in FINETUNES:
            args = throughput_args(model_args, options, lora_r=lora_r)
            flops = report.attempt(f"{workload}, {finetune}: FLOPs per step", lambda: step_flops(args))
            for variant in VARIANTS:
                row = report.attempt(f"{workload}, {finetune}, {variant}", lambda: throughput.run_variant(variant, args, isolated=not options.smoke))
                if row is None:
                    continue
                row = {"workload": workload, "finetune": finetune, "variant": variant, **row,
                       "mfu": flops.mfu(variant, row["seconds_per_step"], lora=bool(lora_r), peak_tflops=peak) if flops else None}
                report.results["throughput"].append(row)
                report.save()
                utilisation = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a"
                print(f"{workload:<34} {finetune:<8} {variant:<32} {row['tokens_per_second']:>12,.0f} response tok/s {row['seconds_per_step']:>8.3f} s/step "
                      f"{row['peak_memory_mb']:>9,.0f} MB  MFU {utilisation}", flush=True)
        measured = report.attempt(f"{workload}: bf16 against fp32", lambda: agreement(model_args, options))
        if measured:
            report.results["bf16_agreement"][workload] = measured
            report.save()
            for precision, figures in measured.items():
                print(f"{workload:<34} {precision:<14} rms vs fp32: padded {figures['padded']:.4f}, packed {figures['packed']:.4f}; "
                      f"packed−padded rms {figures['gap']:.4f} max {figures['gap_max']:.4f}; tolerance {figures['tolerance']:.4f}", flush=True)
        if options.flex:
            compared = report.attempt(f"{workload}: FlexAttention", lambda: flex_against_tree(model_args, options))
            if compared:
                report.results["flex_attention"][workload] = compared
                report.save()
                print(f"{workload:<34} FlexAttention {compared['flex_seconds']:.3f} s against tree SDPA {compared['tree_seconds']:.3f} s per {compared['timed']} "
                      f"({compared['speedup']:.2f}×); max |Δ mean log-prob| {compared['max_abs_mean_logp_gap']:.4f}", flush=True)
    report.results["seconds"] = time.perf_counter() - started
    report.save()
    print(f"done in {report.results['seconds']:.0f} s; {len(report.results['errors'])} part(s) failed", flush=True)
    return 1 if report.results["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
