"""A checkpoint as a plain Hugging Face model directory, or a PEFT adapter, with a model card.

Forms (docs/training.md, "Exporting a model"):

- ``merged`` (a LoRA run's default): the base with the adapter merged in; ``config.json``,
  ``generation_config.json``, safetensors weights and the tokenizer with its chat template, as
  ``AutoModelForCausalLM.from_pretrained(OUT)`` reads them;
- ``adapter``: the PEFT adapter (``adapter_config.json``, ``adapter_model.safetensors``) with its
  base named as the run named it (or, where the run saved its own reference weights, their
  directory), for ``PeftModel.from_pretrained(base, OUT)``;
- ``full`` (a full fine-tune's only form): the model as trained.

The directory is written beside ``OUT`` and renamed into place, so a failed export leaves nothing
half-written behind, and an existing ``OUT`` is replaced only when asked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lambda_dpo import checkpoints
from lambda_dpo.checkpoint_eval import load_checkpoint_config, load_checkpoint_policy
from lambda_dpo.conditioning import conditioned_prompt
from lambda_dpo.reference import saved_reference
from lambda_dpo.train_config import TrainConfig

FORMS = ("merged", "adapter", "full")
CARD = "README.md"


class ExportError(ValueError):
    """A checkpoint that cannot be exported as asked; the message says why and what to do."""


def default_form(config: TrainConfig) -> str:
    return "merged" if config.model.lora.enabled else "full"


def check_export(checkpoint: str | Path, out: str | Path, form: str | None, *, force: bool) -> tuple[Path, TrainConfig, str]:
    """``(checkpoint, config, form)`` after every refusal that needs no model: not a checkpoint, a
    damaged one, an ``OUT`` that exists, a form the run cannot give."""
    checkpoint = checkpoints.require_checkpoint(checkpoint)
    problem = checkpoints.files_problem(checkpoint)
    if problem is not None:
        raise ExportError(f"{checkpoint} is damaged ({problem}); export an intact checkpoint of the run")
    out = Path(out)
    if out.exists() and not force:
        raise ExportError(f"{out} exists; choose another directory or pass --force to replace it")
    config = load_checkpoint_config(checkpoint)
    form = form or default_form(config)
    if form not in FORMS:
        raise ExportError(f"unknown export form {form!r}; choose one of {', '.join(FORMS)}")
    if not config.model.lora.enabled and form != "full":
        raise ExportError(f"{checkpoint} is a full fine-tune (model.lora.enabled: false): it has no adapter to {'merge' if form == 'merged' else 'export'}; export it as it is (leave out --merged/--adapter)")
    if config.model.lora.enabled and form == "full":
        raise ExportError(f"{checkpoint} is a LoRA run: export it --merged or --adapter")
    return checkpoint, config, form


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, form: str | None = None, force: bool = False, command: str | None = None) -> Path:
    """Write ``checkpoint`` to ``out`` as ``form`` (default :func:`default_form`) with a model card
    that quotes ``command`` (default: this call in Python); returns ``out``."""
    checkpoint, config, form = check_export(checkpoint, out, form, force=force)
    command = command or f"lambda_dpo.export.export_checkpoint({str(checkpoint)!r}, {str(out)!r}, form={form!r})"
    return write_export(checkpoint, config, form, Path(out), command)


def write_export(checkpoint: Path, config: TrainConfig, form: str, out: Path, command: str) -> Path:
    """The export of a checkpoint :func:`check_export` passed (its config and form)."""
    _, tokenizer, policy = load_checkpoint_policy(checkpoint)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    if form == "adapter":
        policy.save_pretrained(staging)
        name_base(staging / "adapter_config.json", adapter_base(checkpoint, config))
    else:
        model = policy.merge_and_unload() if form == "merged" else policy
        model.save_pretrained(staging, safe_serialization=True)
        if not (staging / "generation_config.json").exists():
            model.generation_config.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / CARD).write_text(model_card(checkpoint, config, form, tokenizer, command))
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def name_base(adapter_config: Path, base: str) -> None:
    """Name the adapter's base as the run named it (peft writes the resolved local path)."""
    settings = json.loads(adapter_config.read_text())
    settings["base_model_name_or_path"] = base
    adapter_config.write_text(json.dumps(settings, indent=2))


def adapter_base(checkpoint: Path, config: TrainConfig) -> str:
    """Where the adapter's base is: the run's own reference weights when it saved them (a random
    init, an SFT warm start), else the model the run named."""
    saved = saved_reference(checkpoint.parent.parent)
    return str(saved.resolve()) if saved is not None else config.model.name_or_path


def run_metrics(checkpoint: Path) -> dict[str, float]:
    """The run's final held-out metrics when they were measured on this checkpoint, else none."""
    path = checkpoint.parent.parent / "eval.json"
    if not path.is_file():
        return {}
    evaluation = json.loads(path.read_text())
    return evaluation.get("metrics", {}) if Path(evaluation.get("checkpoint", "")).name == checkpoint.name else {}


def base_note(checkpoint: Path, config: TrainConfig, form: str) -> str:
    from lambda_dpo.pretrained import REGISTRY

    name = config.model.name_or_path
    if form == "adapter" and adapter_base(checkpoint, config) != name:
        return (f"The adapter's base is the run's own reference weights (a random init or an SFT warm start of `{name}`), "
                f"at `{adapter_base(checkpoint, config)}`: copy that directory with the adapter, or export `--merged`.")
    if name in REGISTRY:
        entry = REGISTRY[name]
        fetch = (f"`{name}` is lambda-dpo's name for {entry.description} ({entry.license}). "
                 f"`lambda-dpo model fetch {name}` prints the directory it is converted to.")
        return fetch + (" Load the adapter's base from that directory." if form == "adapter" else "")
    return f"The base model is `{name}`."


def model_card(checkpoint: Path, config: TrainConfig, form: str, tokenizer, command: str) -> str:
    """A Hugging Face model card: YAML metadata, then what the model is, how it was trained and scored."""
    from lambda_dpo.pretrained import REGISTRY

    name = config.model.name_or_path
    license_ = REGISTRY[name].license.lower() if name in REGISTRY else None
    metadata = {"library_name": "peft" if form == "adapter" else "transformers", "base_model": name, "tags": ["lambda-dpo", "dpo", "preference-alignment"]}
    if license_:
        metadata["license"] = license_
    front = "\n".join(f"{key}: {json.dumps(value)}" for key, value in metadata.items())
    dimensions = list(config.data.dimensions)
    lambdas = config.lambdas
    lam = f"`{lambdas.sampler}`" + (f", weights {list(lambdas.weights)}" if lambdas.weights else "")
    rows = "\n".join(f"| `{k}` | {v:.4f} |" for k, v in sorted(run_metrics(checkpoint).items()) if isinstance(v, (int, float)) and k.split("/")[0] in ("verifiable", "top1_accuracy", "reward_accuracy", "loss"))
    lines = [
        "---", front, "---", "",
        f"# {checkpoint.parent.parent.name} ({checkpoint.name})", "",
        f"Fine-tuned with λ-DPO (multi-preference λ-weighted listwise DPO) by lambda-dpo, exported as `{form}`. {base_note(checkpoint, config, form)}", "",
        "## Training", "",
        f"- preference dimensions: {', '.join(dimensions)}",
        f"- λ: {lam}",
        f"- loss: `{config.loss.name}`, β {config.loss.beta}, log-probs `{config.loss.logp_reduction}`",
        f"- data: `{config.data.source}`",
        f"- steps: {checkpoints.checkpoint_step(checkpoint.name)} of {config.optim.max_steps}, learning rate {config.optim.learning_rate}"
        + (f", LoRA r {config.model.lora.r}" if config.model.lora.enabled else ", every weight"),
        "",
    ]
    if rows:
        lines += ["## Held-out metrics", "", "| metric | value |", "| --- | ---: |", rows, ""]
    if config.conditioning == "prompt":
        example = conditioned_prompt("Tell me about salt in cooking.", [1.0 / len(dimensions)] * len(dimensions), dimensions, tokenizer, config.preamble)
        lines += [
            "## Steering by λ", "",
            "The model reads λ from its system message: give the preference weights there, in this format "
            "(here the centroid; any λ on the simplex, in the order of the dimensions above):", "",
            "```text", example.rstrip("\n"), "```", "",
        ]
    lines += ["## Made by", "", "```bash", command, "```", ""]
    return "\n".join(lines)
