"""``lambda-dpo schedule fit | show | plot``: the scheduler from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich import box
from rich.table import Table

from lambda_dpo.commands import add_config_arguments, print_checks
from lambda_dpo.console import make_console

import dataclasses

from search.observations import lambda_columns, read_csv, read_observations
from search.lambda_scheduler import CANDIDATE_KINDS, CHOICE_SET, PRESETS, PolynomialScheduler, LambdaSchedulerSettings, effective_sample_size, leave_one_out, leave_one_out_error

def _settings_from_args(args) -> tuple[LambdaSchedulerSettings, str | None]:
    """The preset with every flag given on the command line on top of it, and the CSV of
    candidates to score when ``--candidates`` names one."""
    preset = PRESETS["paper" if args.paper else args.preset]
    given = {item.name: getattr(args, item.name) for item in dataclasses.fields(LambdaSchedulerSettings) if getattr(args, item.name, None) is not None}
    candidates_file = given.pop("candidates") if given.get("candidates") not in (None, *CANDIDATE_KINDS) else None
    return dataclasses.replace(preset, **given), candidates_file


def _scheduler_from_args(args, dimensions: list[str]) -> PolynomialScheduler:
    settings, candidates_file = _settings_from_args(args)
    candidates = lambda_columns(read_csv(candidates_file), candidates_file, dimensions)[1] if candidates_file else None
    return settings.build(dimensions=dimensions, random_state=args.seed, candidates=candidates)


def add_settings_flags(parser) -> None:
    """A flag per :class:`LambdaSchedulerSettings` field, with its help and choices; unset flags keep the preset's value."""
    defaults = PRESETS["default"]
    for item in dataclasses.fields(LambdaSchedulerSettings):
        choices = item.metadata.get("choices")
        kind = {int: int, float: float}.get(type(getattr(defaults, item.name)), float if item.name == "local_bandwidth" else str)
        help_text = f"{item.metadata['help']} (default {getattr(defaults, item.name)})"
        if item.name == "candidates":
            choices, help_text = None, help_text + "; or a CSV of candidate λ to score"
        parser.add_argument(f"--{item.name.replace('_', '-')}", type=kind, choices=choices, default=None, help=help_text)


def model_choice_line(scheduler: PolynomialScheduler) -> str:
    """How the fitted model was chosen, in words."""
    choice = scheduler.model_choice_
    if choice["by"] != "loo":
        return f"degree {scheduler.degree_}, alpha {scheduler.alpha_:g}: {choice['by']}"
    return (f"chosen by leave-one-out among {CHOICE_SET}: degree {scheduler.degree_}, alpha {scheduler.alpha_:g}, "
            f"LOO RMSE {choice['loo_rmse']:.4f} (the settings' degree {scheduler.degree}, alpha {scheduler.alpha:g}: {choice['loo_rmse_of_settings']:.4f})")


def render_summary(scheduler: PolynomialScheduler, *, top: int = 10, console=None) -> None:
    console = console or make_console()
    candidates, probabilities = scheduler.distribution()
    observed = scheduler.observed_scores_
    best_observed = int(np.argmax(observed))
    console.print(
        f"[bold]{scheduler.basis}[/] basis, degree {scheduler.degree_}, {scheduler.n_features_} features, "
        f"{scheduler.regression} regression{f' (alpha {scheduler.alpha_:g})' if scheduler.regression == 'ridge' else ''}, "
        f"τ = {scheduler.temperature:g} ({scheduler.temperature_scale})"
    )
    console.print(f"model: {model_choice_line(scheduler)}")
    console.print(
        f"{len(observed)} observations; best observed {observed[best_observed]:.4f} at "
        f"λ = {np.round(scheduler.observed_lambdas_[best_observed], 3).tolist()}"
    )
    console.print(
        f"{len(candidates)} candidates; effective sample size {effective_sample_size(probabilities):.1f}; "
        f"predicted best {scheduler.predict(scheduler.best_candidate())[0]:.4f} at λ = {np.round(scheduler.best_candidate(), 3).tolist()}"
    )
    if len(observed) >= 3:
        error, yardstick = leave_one_out_error(observed, leave_one_out(scheduler, scheduler.observed_lambdas_, observed))
        console.print(f"leave-one-out RMSE {error:.4f} (predicting each observation by the others' mean: {yardstick:.4f})")
    bayesian = scheduler.coef_covariance_ is not None
    table = Table(title=f"top {min(top, len(candidates))} candidates by probability", box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    for name in scheduler.dimensions_:
        header = name.replace("_", "_\n")
        table.add_column(header, justify="right", min_width=max(map(len, header.splitlines())))
    table.add_column("predicted", justify="right")
    if bayesian:
        table.add_column("std", justify="right")
    table.add_column("probability", justify="right", min_width=11)
    order = np.argsort(-probabilities)[:top]
    means = scheduler.predict(candidates[order], return_std=bayesian)
    means, stds = means if bayesian else (means, None)
    for rank, index in enumerate(order):
        row = [str(rank + 1), *(f"{v:.3f}" for v in candidates[index]), f"{means[rank]:.4f}"]
        if bayesian:
            row.append(f"{stds[rank]:.4f}")
        row.append(f"{probabilities[index]:.4f}")
        table.add_row(*row)
    console.print(table)


def command_fit(args) -> int:
    dimensions = args.dimensions.split(",") if args.dimensions else None
    dimensions, lambdas, scores = read_observations(args.observations, args.score, dimensions)
    scheduler = _scheduler_from_args(args, dimensions).fit(lambdas, scores)
    scheduler.to_json(args.out)
    render_summary(scheduler, top=args.top)
    make_console().print(f"schedule written to [bold]{args.out}[/]")
    return 0


def command_show(args) -> int:
    render_summary(PolynomialScheduler.from_json(Path(args.schedule)), top=args.top)
    return 0


def command_plot(args) -> int:
    from search.plots import plot_schedule

    path = plot_schedule(PolynomialScheduler.from_json(Path(args.schedule)), args.out)
    make_console().print(f"plot written to [bold]{path}[/]")
    return 0


def add_schedule_parser(subparsers) -> None:
    schedule = subparsers.add_parser("schedule", help="fit, show and plot the λ scheduler")
    actions = schedule.add_subparsers(dest="action", required=True)

    fit = actions.add_parser("fit", help="fit the scheduler to observed (λ, score) pairs and write schedule JSON")
    fit.add_argument("--observations", required=True, help="CSV with one column per dimension (or lambda/<dim>) and the score column")
    fit.add_argument("--score", default="objective", help="name of the score column (default: objective)")
    fit.add_argument("--dimensions", help="comma-separated dimension columns (default: lambda/* columns, else all but the score)")
    fit.add_argument("--out", required=True, help="where to write the schedule JSON")
    fit.add_argument("--preset", choices=sorted(PRESETS), default="default",
                     help="the settings to start from: default (a sweep's) or paper (degree 2, lstsq, τ = 100 on raw scores)")
    fit.add_argument("--paper", action="store_true", help="the same as --preset paper")
    add_settings_flags(fit)
    fit.add_argument("--seed", type=int, default=0, help="draws of the candidates (a sweep uses its searcher.seed, default 0)")
    fit.add_argument("--top", type=int, default=10, help="rows of the summary table")
    fit.set_defaults(handler=command_fit)

    show = actions.add_parser("show", help="a table of the top candidates of a schedule JSON")
    show.add_argument("schedule")
    show.add_argument("--top", type=int, default=10)
    show.set_defaults(handler=command_show)

    plot = actions.add_parser("plot", help="plot a schedule JSON to PNG")
    plot.add_argument("schedule")
    plot.add_argument("--out", required=True)
    plot.set_defaults(handler=command_plot)


def sweep_table(config, table: pd.DataFrame) -> Table:
    """Trials ranked by objective (best first), errored trials last."""
    from search.sweep_config import OBJECTIVE

    order = table.assign(_key=table[OBJECTIVE].astype(float) * (1 if config.mode == "max" else -1)).sort_values("_key", ascending=False, na_position="last")
    result = Table(title=f"λ sweep {config.name}: {len(table)} trials, ranked by {config.objective} ({config.mode})", box=box.SIMPLE_HEAVY)
    result.add_column("#", justify="right")
    result.add_column("trial")
    for name in config.dimensions:
        header = name.replace("_", "_\n")
        result.add_column(header, justify="right", min_width=max(map(len, header.splitlines())))
    result.add_column("objective", justify="right")
    metrics = [name for name in config.table_metrics if name in table.columns]
    for name in metrics:
        result.add_column(name.replace("/", "/\n"), justify="right")
    result.add_column("status")
    for rank, (_, row) in enumerate(order.iterrows(), start=1):
        cells = [str(rank), str(row["trial_id"]), *(f"{row[f'lambda/{d}']:.3f}" for d in config.dimensions)]
        cells += [f"{float(row[name]):.4f}" for name in (OBJECTIVE, *metrics)]
        result.add_row(*cells, "ok" if row["status"] == "TERMINATED" else str(row["status"]))
    return result


def command_sweep(args) -> int:
    from search.analysis import INTERRUPTED, best_trial, centroid_trial, results_table, write_outputs
    from search.sweep import run_sweep
    from search.sweep_config import OBJECTIVE, load_sweep_config, read_sweep_config, warm_start_rows

    console = make_console()
    if args.resume:
        if args.config or args.overrides:
            raise ValueError("--resume continues a sweep exactly as it started: give no CONFIG or overrides with it")
        config = read_sweep_config(args.resume)
    else:
        if args.config is None:
            raise ValueError("give a sweep CONFIG file, or --resume SWEEP_DIR")
        config = load_sweep_config(args.config, args.overrides)
    if args.dry_run:
        from search.sweep import check_sweep_directory
        from search.sweep_config import check_sweep_config

        print_checks(console, check_sweep_config(config) + [check_sweep_directory(config, resume=bool(args.resume), reach_remote=False)])
        console.print(f"sweep config valid: {config.searcher.num_trials} trials of {config.train_config or 'the inline train config'}, searcher {config.searcher.name}, into {config.sweep_dir()}")
        return 0
    console.print(f"sweep directory: {config.sweep_dir()}" + (" (resuming)" if args.resume else ""))
    console.print(f"every trial's curves: tensorboard --logdir {config.sweep_dir() / 'runs'}")
    if config.searcher.warm_start:
        console.print(f"warm start: {len(warm_start_rows(config)[1])} observations from {config.searcher.warm_start}")
    table = results_table(config, run_sweep(config, resume=bool(args.resume), verbose=args.verbose))
    written = write_outputs(config, table)
    console.print(sweep_table(config, table))
    best, centroid = best_trial(config, table), centroid_trial(config, table)
    interrupted = int((table["status"] == INTERRUPTED).sum()) if len(table) else 0
    if interrupted:
        finished = int((table["status"] == "TERMINATED").sum())
        console.print(f"[yellow]sweep interrupted[/]: {finished} of {config.searcher.num_trials} trials finished, {interrupted} stopped before their end; "
                      f"continue it with: lambda-dpo sweep --resume {config.sweep_dir()}")
    if best is None:
        if not interrupted:
            console.print("[red]no trial finished[/]: see the trial errors above")
        return 130 if interrupted else 1
    weights = ", ".join(f"{d}={best[f'lambda/{d}']:.3f}" for d in config.dimensions)
    console.print(f"best λ: {weights}  →  {config.objective} {best[OBJECTIVE]:.4f} (trial {best['trial_id']})")
    if centroid is not None:
        console.print(f"centroid λ trial {centroid['trial_id']}: {config.objective} {float(centroid[OBJECTIVE]):.4f}")
    for name, path in written.items():
        console.print(f"{name}: {path}")
    return 130 if interrupted else 0  # 128 + SIGINT: the run did not end on its own


def add_sweep_parser(subparsers) -> None:
    sweep = subparsers.add_parser("sweep", help="search λ with Ray Tune over Ray Train λ-DPO fine-tunes")
    add_config_arguments(
        sweep, example="configs/sweep/tiny.yaml", override_example="searcher.num_trials=12 train.optim.max_steps=200",
        resume="continue an interrupted sweep from its directory",
        dry_run="check the config, the base fine-tune and the searcher without running anything",
    )
    sweep.add_argument("--verbose", action="store_true", help="show Ray's and Ray Train's own output here (by default it goes to SWEEP_DIR/logs/ray.log)")
    sweep.set_defaults(handler=command_sweep)
