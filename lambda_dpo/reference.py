"""The reference a run's log-ratios are taken against: its weights (saved when they are not
``model.name_or_path`` unchanged) and its log-probs, computed once per split and cached (docs/method.md, "The reference")."""

from __future__ import annotations

from pathlib import Path

from lambda_dpo.data.collate import longest_first
from lambda_dpo.modeling import (
    ReferenceCache,
    fingerprint,
    load_base_model,
)
from lambda_dpo.reporting import track
from lambda_dpo.run_setup import RunSetup, seed_everything
from lambda_dpo.train_config import TrainConfig
from lambda_dpo.warm_start import sft_warm_start


REFERENCE_DIR = "reference"  # in a run directory: the reference weights, when they are not model.name_or_path unchanged


def saved_reference(run_dir: Path) -> Path | None:
    """The run's own saved reference weights (a random init, an SFT warm start), or None when its
    reference is ``model.name_or_path`` as loaded."""
    saved = Path(run_dir) / REFERENCE_DIR
    return saved if (saved / "config.json").exists() else None


def build_reference_weights(setup: RunSetup):
    """The base model the preference stage starts from, saved under ``run_dir/reference`` when
    it differs from ``model.name_or_path`` (random init, SFT warm start). Reused on resume."""
    config, saved = setup.config, saved_reference(setup.run_dir)
    if saved is not None:
        return load_base_model(config.model, weights=saved)
    seed_everything(config.seed)
    base = load_base_model(config.model, vocab_size=len(setup.tokenizer))
    if config.sft.steps:
        base = sft_warm_start(base, setup)
    if config.model.uses_random_init() or config.sft.steps:
        base.save_pretrained(setup.run_dir / REFERENCE_DIR, safe_serialization=True)
    return base


def load_run_base(config: TrainConfig, run_dir: Path):
    """The run's reference weights: ``run_dir/reference`` when saved, else ``model.name_or_path``."""
    return load_base_model(config.model, weights=saved_reference(run_dir))


def fill_reference_cache(setup: RunSetup, split: str, base, *, name: str | None = None) -> ReferenceCache:
    """Reference log-probs of ``setup.encoded[split]`` under ``base``, saved as ``name`` (default the
    split's) and read back when already computed; progress is shown while they are computed."""
    config, encoded = setup.config, setup.encoded[split]
    lengths = (config.data.max_prompt_length, config.data.max_length)
    # The reference is the base model unless an SFT warm start trained it; then all the warm start read
    # shapes it (its seed, its λ, which pick each best response, and the prompt forms), and runs share
    # it only when those agree too.
    warm_start = (config.seed, config.lambdas, config.conditioning, config.preamble) if config.sft.steps else None
    key = fingerprint(config.model, config.sft, warm_start, lengths, [(e.prompt_ids, e.response_ids) for e in encoded])
    encoded = longest_first(encoded)  # the cache is keyed by example: the order only changes the padding
    path = Path(config.reference_cache) / f"{name or split}-{key}.pt" if config.reference_cache else setup.run_dir / "reference_logps" / f"{name or split}.pt"
    cache = ReferenceCache(path, key)
    size = config.eval.batch_size
    starts = range(0, len(encoded), size)
    if not cache.load():
        starts = track(setup.reporter, starts, total=len(starts), description=f"reference log-probs ({split}: {len(encoded)} prompts, batches of {size})")
    batches = (setup.collator(encoded[i : i + size]) for i in starts)
    with setup.autocast:
        cache.fill(base, batches, len(encoded), max(len(e.response_ids) for e in encoded), setup.device)
    return cache
