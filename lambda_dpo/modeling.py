"""Models: loading, LoRA, sequence log-probs, and the reference (docs/method.md: items 1 and "The reference").

The reference of a LoRA policy is the same model with its adapter disabled — no second copy of
the base weights. Reference log-probs are computed once per dataset by :class:`ReferenceCache`,
so a full fine-tune needs no frozen copy during training either: the cache is filled before the
first update.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from lambda_dpo.console import logger
from lambda_dpo.config import AT_LEAST_ONE, Interval, check_settings, setting
from lambda_dpo.data.collate import IGNORE_INDEX
from lambda_dpo.data.packing import LayoutSettings, padded_layout
from lambda_dpo.precision import AUTOCAST_DTYPES, DTYPES, autocast_context, check_precision, resolve_autocast, resolve_dtype
from lambda_dpo.tree_attention import TreePlan, install_tree_attention
from lambda_dpo.pretrained import resolve_model_source

REDUCTIONS = ("mean", "sum")


@dataclass
class LoraConfig:
    """peft LoRA settings; ``enabled: false`` trains every weight."""

    enabled: bool = setting(True, help='train a LoRA adapter (false: every weight)')
    r: int = setting(16, within=AT_LEAST_ONE, help='LoRA rank')
    alpha: int = setting(32, help='LoRA scaling numerator (the update is scaled by alpha / r)')
    dropout: float = setting(0.05, within=Interval(0, 1, "left"), help='dropout on the LoRA input')
    target_modules: List[str] = setting(default_factory=lambda: ["all-linear"], help='module names to adapt, or [all-linear]')

    def __post_init__(self) -> None:
        check_settings(self, "model.lora")


@dataclass
class ModelConfig:
    """Which causal LM to train and how."""

    name_or_path: str = setting("configs/models/tiny-llama", path=True, help='hub id, registered name (lambda-dpo model list) or local directory')
    # Random weights from the architecture in name_or_path's config.json. Unset (null): random
    # only when name_or_path is a directory with a config.json and no weights; true: random even
    # when it has weights (they are not loaded); false: its weights must be loaded.
    random_init: Optional[bool] = setting(None, help="random weights from name_or_path's config.json: null = only when it holds no weights; true = even when it has weights (not loaded); false = its weights must be loaded")
    tokenizer: Optional[str] = setting(None, path=True, help='hub id or directory; None = name_or_path\'s own; "train" = BPE trained on the data (random init only)')
    tokenizer_vocab_size: int = setting(512, within=AT_LEAST_ONE, help='for tokenizer: train')
    dtype: str = setting("auto", help='weights: auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16 (not for training)', choices=("auto", *DTYPES))
    autocast: str = setting("auto", help='matmuls inside the forward: auto (bfloat16 on GPU, none on CPU) | bfloat16 | none', choices=("auto", "none", *AUTOCAST_DTYPES))
    device: str = setting("auto", help='auto | cpu | cuda | cuda:N')
    gradient_checkpointing: bool = setting(False, help='recompute activations in the backward pass (less memory, more time)')
    trust_remote_code: bool = setting(False, help='models whose code lives on the hub (Qwen-1.8B-Chat); only for sources you trust')
    pad_token: Optional[str] = setting(None, help='padding token when the tokenizer has none (default: its eos token)')
    lora: LoraConfig = setting(default_factory=LoraConfig, help='')

    def __post_init__(self) -> None:
        check_settings(self, "model")

    def uses_random_init(self) -> bool:
        """Whether the weights are drawn at random rather than loaded (see ``random_init``).

        Raises ValueError for a combination that would silently train the wrong model: a trained
        tokenizer on pretrained embeddings, or ``random_init: false`` with no weights to load.
        """
        weights = source_has_weights(self.name_or_path)
        random = not weights if self.random_init is None else self.random_init
        if not random and weights is False:
            raise ValueError(f"model.random_init is false, but {self.name_or_path} has a config.json and no weights to load; "
                             "set model.random_init: true (or leave it unset) to build it with random weights")
        if not random and self.tokenizer == "train":
            raise ValueError(f"model.tokenizer: train builds a new vocabulary that the pretrained embeddings of {self.name_or_path} "
                             "do not know; use the model's own tokenizer (model.tokenizer=null), or random weights (model.random_init=true)")
        return random


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def source_has_weights(name_or_path: str) -> bool | None:
    """True for a directory holding weights, False for one with only a config.json, None when
    it is not a local directory (a hub id, or a registered name: both carry weights)."""
    from lambda_dpo.pretrained import REGISTRY

    if name_or_path in REGISTRY:
        return True
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        return None
    return any((path / name).is_file() for name in WEIGHT_FILES) or any(path.glob("model-*.safetensors"))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"model.device is {name!r} but no CUDA device is available")
    return device


def load_tokenizer(config: ModelConfig, *, training_texts: Iterable[str] = (), saved: Path | None = None):
    """The tokenizer named by the config; ``saved`` (a run's tokenizer directory) wins when it exists.

    With ``tokenizer: train`` a byte-level BPE is trained on ``training_texts`` and written to
    ``saved``, so a resumed run or a later evaluation reads the very same vocabulary.
    """
    from transformers import AutoTokenizer

    if saved is not None and (saved / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(saved, trust_remote_code=config.trust_remote_code)
    if config.tokenizer == "train":
        from lambda_dpo.tiny import train_tokenizer

        tokenizer = train_tokenizer(training_texts, vocab_size=config.tokenizer_vocab_size)
    else:
        source = resolve_model_source(config.tokenizer or config.name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=config.trust_remote_code)
    if config.pad_token is not None:
        tokenizer.pad_token = config.pad_token
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token is None:
        raise ValueError(f"the tokenizer of {config.tokenizer or config.name_or_path} has no pad and no eos token: name one with model.pad_token")
    if saved is not None:
        tokenizer.save_pretrained(saved)
    return tokenizer


def load_base_model(config: ModelConfig, *, weights: str | Path | None = None, vocab_size: int | None = None):
    """The causal LM without adapters, on the configured device and dtype.

    weights: a directory to load instead of ``name_or_path`` (a run's saved reference weights).
    Under random init (:meth:`ModelConfig.uses_random_init`) and no ``weights``, the architecture
    comes from ``name_or_path``'s config.json with ``vocab_size`` rows of embeddings, and the
    weights are drawn from torch's current RNG (seed it first).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    check_precision(dtype, resolve_autocast(config.autocast, device), device)
    source = resolve_model_source(config.name_or_path)
    if weights is None and config.uses_random_init():
        architecture = AutoConfig.from_pretrained(source, trust_remote_code=config.trust_remote_code)
        if vocab_size is not None:
            architecture.vocab_size = vocab_size
        model = AutoModelForCausalLM.from_config(architecture, dtype=dtype, trust_remote_code=config.trust_remote_code)
    else:
        model = AutoModelForCausalLM.from_pretrained(weights or source, dtype=dtype, trust_remote_code=config.trust_remote_code)
    return model.to(device)


def check_vocabulary(config: ModelConfig, tokenizer) -> None:
    """A tokenizer with more tokens than the pretrained model has embedding rows is an error
    (its extra ids would index past the table); random init sizes the table to the tokenizer."""
    from transformers import AutoConfig

    if config.uses_random_init():
        return
    source = resolve_model_source(config.name_or_path)
    rows = AutoConfig.from_pretrained(source, trust_remote_code=config.trust_remote_code).get_text_config().vocab_size
    if len(tokenizer) > rows:
        raise ValueError(f"the tokenizer ({config.tokenizer or config.name_or_path}) has {len(tokenizer)} tokens, but the embeddings of "
                         f"{config.name_or_path} have {rows} rows: they do not belong together (use the model's own tokenizer)")


def add_lora(model, config: LoraConfig):
    """Wrap ``model`` in a fresh peft LoRA adapter (the base weights are frozen, not copied)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = config.target_modules
    peft_config = PeftLoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else list(targets),
        task_type="CAUSAL_LM",
    )
    with peft_quietly():
        return get_peft_model(model, peft_config)


@contextlib.contextmanager
def peft_quietly():
    """peft asks the model for ``is_gradient_checkpointing``, which transformers 5.24 deprecates:
    a warning that is peft's to fix, not our user's to read."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def is_lora(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in the backward pass (transformers ≥ 5.24 names it activation checkpointing)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if is_lora(model):
        model.enable_input_require_grads()


@contextlib.contextmanager
def reference_mode(model):
    """Run ``model`` as the reference: a LoRA policy with its adapter disabled, in eval mode.

    A fully fine-tuned model is its own reference only before its first update; the training
    loop fills the reference cache then.
    """
    was_training = model.training
    model.eval()
    adapter_off = model.disable_adapter() if is_lora(model) else contextlib.nullcontext()
    try:
        with adapter_off, torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def _token_logps(logits: Tensor, targets: Tensor) -> Tensor:
    logits = logits.float()
    return logits.gather(-1, targets[:, None]).squeeze(-1) - logits.logsumexp(-1)


def _head_token_logps(head, hidden: Tensor, targets: Tensor) -> Tensor:
    return _token_logps(head(hidden), targets)


def chunked_token_logps(logits_of, selected: Tensor, targets: Tensor, *, chunk_size: int = 1024) -> Tensor:
    """``[T]`` fp32 log-probs of ``targets`` from ``logits_of(selected)``, ``chunk_size`` tokens at a
    time, each chunk cast to fp32 for its logsumexp: never a full-vocabulary fp32 log-softmax of the
    batch. When the chunks need gradients in low precision, each is recomputed in the backward
    pass rather than keeping its fp32 copy alive."""
    recompute = selected.requires_grad and selected.dtype != torch.float32
    pieces = [
        checkpoint(_head_token_logps, logits_of, chunk, chunk_targets, use_reentrant=False) if recompute else _head_token_logps(logits_of, chunk, chunk_targets)
        for chunk, chunk_targets in zip(selected.split(chunk_size), targets.split(chunk_size))
    ]
    return torch.cat(pieces) if pieces else selected.new_zeros(0, dtype=torch.float32)


def sequence_logps(logits: Tensor, labels: Tensor, *, chunk_size: int = 1024) -> tuple[Tensor, Tensor]:
    """Summed response log-probs and response token counts.

    logits: ``[R, L, V]`` in the model's dtype; labels: ``[R, L]`` with IGNORE_INDEX on prompt
    and padding. Returns ``(sums [R] fp32, counts [R] long)``; only response positions are scored
    (:func:`chunked_token_logps`).
    """
    shifted_labels = labels[:, 1:]
    response = shifted_labels != IGNORE_INDEX
    rows, positions = response.nonzero(as_tuple=True)
    token_logps = chunked_token_logps(lambda x: x, logits[:, :-1][rows, positions], shifted_labels[rows, positions], chunk_size=chunk_size)
    sums = torch.zeros(labels.shape[0], dtype=torch.float32, device=labels.device).index_add(0, rows, token_logps)
    return sums, response.sum(dim=-1)


# Causal LMs whose logits are exactly ``lm_head(decoder(...))`` (no soft-capping or scaling) and
# whose decoder takes explicit positions and passes extra keyword arguments down to its attention
# function: the scorer runs the LM head only where a response token is predicted, and the
# shared-prefix layout may be used (its tree attention is a registered attention function).
PLAIN_HEAD_MODEL_TYPES = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi3", "olmo2", "smollm3"})


def _plain_head(model) -> bool:
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) in PLAIN_HEAD_MODEL_TYPES and hasattr(model, "get_decoder")


def check_layout_support(model, packing: str) -> None:
    """A clear error, before any work, when ``model`` cannot run the shared-prefix layout."""
    if packing == "shared_prefix" and not _plain_head(model):
        model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise ValueError(f"data.packing shared_prefix needs a decoder that runs a registered attention function with explicit positions; model type {model_type!r} "
                         f"is not one known to (known: {', '.join(sorted(PLAIN_HEAD_MODEL_TYPES))}): set data.packing=none")


class ResponseScorer(torch.nn.Module):
    """Log-probs of the response tokens a :class:`~lambda_dpo.data.packing.Layout` names.

    The decoder runs over the layout's rows; the LM head runs only on the hidden states that
    predict a response token (prompt, padding and the last token of each row need no
    vocabulary projection). Data-parallel training wraps this module, so DDP sees the forward.
    Models outside :data:`PLAIN_HEAD_MODEL_TYPES` run their own full forward (padded layout only).
    """

    def __init__(self, model, *, chunk_size: int = 1024):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        self.plain_head = _plain_head(model)
        if self.plain_head:
            install_tree_attention(model)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None, rows: Tensor, positions: Tensor, targets: Tensor,
                tree_plan: TreePlan | None = None) -> Tensor:
        """``[T]`` fp32 log-probs of ``targets``, predicted at ``(rows, positions)``; ``tree_plan``:
        the blocks of a shared-prefix batch, for :func:`lambda_dpo.tree_attention.tree_attention`."""
        if not self.plain_head:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False).logits
            return chunked_token_logps(lambda x: x, logits[rows, positions], targets, chunk_size=self.chunk_size)
        extra = {"tree_plan": tree_plan} if tree_plan is not None else {}
        hidden = self.model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False, **extra).last_hidden_state
        return chunked_token_logps(self.model.get_output_embeddings(), hidden[rows, positions], targets, chunk_size=self.chunk_size)


def scorer_of(model) -> ResponseScorer:
    return model if isinstance(model, ResponseScorer) or isinstance(getattr(model, "module", None), ResponseScorer) else ResponseScorer(model)


@dataclass
class ResponseLogps:
    """Per-response log-probs of one batch: ``sum``, ``mean`` and ``tokens``, each ``[B, N]``."""

    sum: Tensor
    mean: Tensor
    tokens: Tensor

    def reduced(self, reduction: str) -> Tensor:
        return self.mean if reduction == "mean" else self.sum


def response_logps(model, batch: dict[str, Tensor]) -> ResponseLogps:
    """Per-response log-probs ``[B, N]`` of the batch, in one forward pass over its layout
    (``batch["layout"]``: the collator's :class:`LayoutSettings`; the padded layout without it)."""
    shape = batch["response_mask"].shape
    settings = batch.get("layout")
    layout = settings.of(batch) if settings is not None else padded_layout(batch)
    device = batch["input_ids"].device
    layout = layout.to(device)
    scorer = scorer_of(model)
    if layout.shared:  # the tree of blocks instead of a mask (lambda_dpo/tree_attention.py)
        unused_mask = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=device)  # 4-D: transformers builds no mask of its own
        token_logps = scorer(layout.input_ids, unused_mask, layout.position_ids, layout.rows, layout.positions, layout.targets, tree_plan=TreePlan.of(layout))
    else:
        token_logps = scorer(layout.input_ids, layout.attention_mask, layout.position_ids, layout.rows, layout.positions, layout.targets)
    sums = torch.zeros(layout.num_responses, dtype=torch.float32, device=device).index_add(0, layout.owners, token_logps)
    counts = torch.zeros(layout.num_responses, dtype=torch.long, device=device).index_add(0, layout.owners, torch.ones_like(layout.owners))
    sums, counts = sums.view(shape), counts.view(shape)
    return ResponseLogps(sum=sums, mean=sums / counts.clamp(min=1), tokens=counts)


@torch.no_grad()
def bf16_logp_tolerance(model, batch: dict[str, Tensor]) -> float:
    """How far a bf16 forward may move the batch's mean response log-probs from fp32 (rms over
    responses), derived from this model's own numbers (docs/training.md, "Precision").

    ``model`` runs in fp32. The last rounding of a bf16 forward is measured exactly: the LM head's
    input and weights rounded to bf16 (:data:`~lambda_dpo.precision.BF16_UNIT_ROUNDOFF` each),
    giving the rms change δ of the mean log-probs. A bf16 forward rounds the residual stream once
    more per attention and per MLP block, 2L + 1 roundings in all; independent roundings add in
    quadrature, so the whole forward's error is about δ·√(2L + 1). The tolerance is twice that.
    """
    if not _plain_head(model):
        raise ValueError("bf16_logp_tolerance needs a model whose logits are its LM head on its decoder's states")
    layout = padded_layout(batch)
    hidden = model.get_decoder()(input_ids=layout.input_ids, attention_mask=layout.attention_mask, position_ids=layout.position_ids, use_cache=False).last_hidden_state
    states, head = hidden[layout.rows, layout.positions].float(), model.get_output_embeddings().weight.float()

    def mean_logps(states, head):
        token_logps = _token_logps(states @ head.T, layout.targets)
        sums = torch.zeros(layout.num_responses, device=states.device).index_add(0, layout.owners, token_logps)
        counts = torch.zeros(layout.num_responses, device=states.device).index_add(0, layout.owners, torch.ones_like(token_logps))
        return sums[counts > 0] / counts[counts > 0]

    rounded = lambda tensor: tensor.bfloat16().float()  # noqa: E731
    last_rounding = (mean_logps(rounded(states), rounded(head)) - mean_logps(states, head)).pow(2).mean().sqrt()
    roundings = 2 * model.config.get_text_config().num_hidden_layers + 1
    return 2 * float(last_rounding) * roundings**0.5


BF16_PRECISIONS = ("bf16 weights", "bf16 autocast")


def bf16_agreement(model, batch: dict[str, Tensor], pad_token_id: int, precision: str, *, max_tokens_per_row: int = 1024) -> dict[str, float]:
    """How far the padded and the packed layouts in bf16 stray from fp32, next to the tolerance.

    ``model`` is in fp32; ``precision`` is ``"bf16 weights"`` (a bf16 copy of the model) or
    ``"bf16 autocast"`` (the fp32 weights under bf16 autocast). Returns the rms over responses of
    each layout's mean log-probs minus fp32's (``padded``, ``packed``), the rms and the max of
    packed minus padded (``gap``, ``gap_max``) and :func:`bf16_logp_tolerance` (``tolerance``).
    The agreement rule is documented in docs/training.md ("Precision"): each layout within the
    tolerance of fp32, the gap within √2 of it and no single response past twice it."""
    if precision not in BF16_PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(BF16_PRECISIONS)}")
    device = next(model.parameters()).device
    batch = to_device(batch, device)
    packed = {**batch, "layout": LayoutSettings("shared_prefix", max_tokens_per_row, pad_token_id)}
    mask = batch["response_mask"]
    tolerance = bf16_logp_tolerance(model, batch)
    in_precision = copy.deepcopy(model).to(torch.bfloat16) if precision == "bf16 weights" else model
    with torch.no_grad():
        exact = response_logps(model, batch).mean[mask]
        with autocast_context(device, torch.bfloat16 if precision == "bf16 autocast" else None):
            rounded = {name: response_logps(in_precision, layout).mean[mask] for name, layout in (("padded", batch), ("packed", packed))}
    rms = lambda values: float(values.float().pow(2).mean().sqrt())  # noqa: E731
    gap = rounded["packed"] - rounded["padded"]
    return {"padded": rms(rounded["padded"] - exact), "packed": rms(rounded["packed"] - exact), "gap": rms(gap), "gap_max": float(gap.abs().max()),
            "tolerance": tolerance, "dtype": str(rounded["packed"].dtype).removeprefix("torch.")}


def fingerprint(*parts: object) -> str:
    """A short stable hash of what a cached value depends on."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
    return digest.hexdigest()[:16]


class ReferenceCache:
    """Reference log-probs of one dataset, computed once and kept in memory and on disk.

    Rows are example keys, columns response slots; values are ``[sum, mean]`` log-probs, NaN
    for slots an example does not have. ``forward_rows`` counts the sequences the reference
    model has scored, so tests can check nothing is recomputed.
    """

    def __init__(self, path: Path | None, key: str):
        self.path = path
        self.key = key
        self.values: Tensor | None = None
        self.forward_rows = 0

    def load(self) -> bool:
        """Read the cache from disk if it exists and was computed for the same data and model; a
        damaged file is named in a warning and left to be recomputed."""
        if self.path is None or not self.path.exists():
            return False
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            matches = saved.get("key") == self.key
            values = saved["values"] if matches else None
        except Exception as error:  # truncated or overwritten: torch raises several kinds
            logger.warning(f"reference log-probs cache {self.path} is damaged ({type(error).__name__}); computing it again")
            return False
        if not matches:
            return False
        self.values = values
        return True

    def fill(self, model, batches: Iterable[dict[str, Tensor]], num_examples: int, num_slots: int, device: torch.device) -> None:
        """Score every example with ``model`` in reference mode (skipped when already loaded)."""
        if self.values is not None or self.load():
            return
        values = torch.full((num_examples, num_slots, 2), float("nan"))
        with reference_mode(model):
            for batch in batches:
                logps = response_logps(model, to_device(batch, device))
                self.forward_rows += batch["input_ids"].shape[0]
                mask = batch["response_mask"]
                slots = mask.shape[1]
                scored = torch.stack([logps.sum, logps.mean], dim=-1).float().cpu()
                broken = mask & ~torch.isfinite(scored).all(dim=-1)
                if broken.any():
                    keys = batch["example_keys"][broken.any(dim=-1)].tolist()
                    raise ValueError(
                        f"the reference model gives non-finite log-probs for {int(broken.sum())} responses (examples {keys[:5]}): its weights "
                        "are broken or its dtype overflows (try model.dtype=float32); no reference cache was written"
                    )
                block = values[batch["example_keys"], :slots]
                block[mask] = scored[mask]
                values[batch["example_keys"], :slots] = block
        self.values = values
        if self.path is not None:  # written whole, then renamed: a kill mid-write leaves no half file
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")  # runs sharing a cache may write it at once
            torch.save({"key": self.key, "values": values}, partial)
            partial.replace(self.path)

    def lookup(self, example_keys: Tensor, num_slots: int, reduction: str, *, slots: Tensor | None = None) -> Tensor:
        """``[B, num_slots]`` reference log-probs (0 in padded slots); with ``slots`` ``[B, n]``
        (e.g. a pairwise batch's chosen and rejected), the ``[B, n]`` values of those slots."""
        if self.values is None:
            raise RuntimeError("the reference cache is empty; call fill() first")
        column = 1 if reduction == "mean" else 0
        keys = example_keys.cpu()
        if slots is not None:
            return self.values[keys[:, None], slots.cpu(), column].nan_to_num(0.0)
        return self.values[keys, :num_slots, column].nan_to_num(0.0)


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {name: value.to(device) if isinstance(value, Tensor) else value for name, value in batch.items()}
