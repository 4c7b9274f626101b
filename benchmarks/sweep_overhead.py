"""Where a sweep trial's time goes, and what the sweep costs over the same fine-tunes run by hand.

In one invocation, on this machine:

1. a sweep of ``--trials`` trials, ``--concurrency`` at a time (default 2 and 2: the demo's
   fine-tune, configs/sweep/tiny.yaml), run as ``lambda-dpo sweep`` in a process of its own and
   timed from its start (Ray's start-up counted in) to its exit;
2. the same fine-tunes, each the trial's own resolved config (its λ, its steps) as a plain
   ``lambda-dpo train`` process, all started side by side and timed until the last one exits;
   each computes its own reference log-probs, as the sweep's trials do (their SFT warm starts
   differ by λ, so they share none).

It prints the sweep's wall time over the plain runs' (the target: at most 1.25), and a table of
where each trial's time went, from the marks every run writes (``timings.jsonl``,
lambda_dpo/timings.py) and the sweep's trial log (when Tune started and ended each trial): Ray Train worker start, imports until the loop, data and tokenizer, SFT
warm start, reference pass, training, final evaluation, and the final report and teardown; and for
the sweep, Ray's start-up before the first trial, the time trial slots stood idle, and the outputs
after the last.

    python benchmarks/sweep_overhead.py                        # 2 trials, 2 at a time (about 2 min)
    python benchmarks/sweep_overhead.py --trials 8 --json overhead.json   # the whole demo
    python benchmarks/sweep_overhead.py --sweep-dir runs/sweeps/tiny       # only the table of a finished sweep
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lambda_dpo import timings

SWEEP_CONFIG = "configs/sweep/tiny.yaml"
TARGET_RATIO = 1.25
# (phase, from mark, to mark), in the order a trial passes them.
PHASES = (
    ("Ray Train worker start", timings.TRIAL_STARTED, timings.WORKER_STARTED),
    ("imports and set-up until the loop", timings.WORKER_STARTED, timings.TRAIN_STARTED),
    ("data and tokenizer", timings.TRAIN_STARTED, timings.DATA_READY),
    ("SFT warm start", timings.DATA_READY, timings.WARM_START_DONE),
    ("reference pass", timings.WARM_START_DONE, timings.REFERENCE_READY),
    ("training (checkpoints and reports included)", timings.REFERENCE_READY, timings.TRAINING_DONE),
    ("final evaluation", timings.TRAINING_DONE, timings.EVALUATION_DONE),
    ("final report and teardown", timings.EVALUATION_DONE, timings.TRIAL_ENDED),
)


def phase_seconds(marks: dict[str, dict], started: float | None = None, ended: float | None = None) -> dict[str, float]:
    """Each phase's seconds from one run's marks; ``started``/``ended``: a plain process's own start
    and exit, standing in for the trial's (a plain run has no Ray marks)."""
    times = {event: row["time"] for event, row in marks.items()}
    if started is not None:
        times[timings.TRIAL_STARTED] = times[timings.WORKER_STARTED] = started
    if ended is not None:
        times[timings.TRIAL_ENDED] = ended
    seconds = {name: times[end] - times[start] for name, start, end in PHASES if start in times and end in times}
    if timings.TRAINING_DONE in marks:
        seconds["of which checkpoints and reports"] = marks[timings.TRAINING_DONE].get("saving_seconds", 0.0)
    if timings.TRIAL_STARTED in times and timings.TRIAL_ENDED in times:
        seconds["total"] = times[timings.TRIAL_ENDED] - times[timings.TRIAL_STARTED]
    return seconds


def trial_marks(sweep_dir: Path) -> dict[str, dict[str, dict]]:
    """Each trial's marks, with its start and end from the sweep's trial log (the Tune driver's)."""
    from search.trial_log import read_events

    logged = {(event["trial_id"], event["event"]): event["time"] for event in read_events(sweep_dir)}
    trials = {}
    for run in sorted((sweep_dir / "runs").iterdir()):
        marks = timings.read_marks(run)
        for event, mark in (("started", timings.TRIAL_STARTED), ("finished", timings.TRIAL_ENDED)):
            if (run.name, event) in logged:
                marks[mark] = {"event": mark, "time": logged[run.name, event]}
        if marks:
            trials[run.name] = marks
    return trials


def sweep_phases(sweep_dir: Path, started: float | None = None, ended: float | None = None, concurrency: int = 2) -> dict:
    """Per-trial phase seconds of a sweep directory, and the sweep's own: before the first trial,
    trial slots idle between the first start and the last end, after the last trial."""
    trials = trial_marks(sweep_dir)
    per_trial = {name: phase_seconds(marks) for name, marks in trials.items()}
    starts = [marks[timings.TRIAL_STARTED]["time"] for marks in trials.values() if timings.TRIAL_STARTED in marks]
    ends = [marks[timings.TRIAL_ENDED]["time"] for marks in trials.values() if timings.TRIAL_ENDED in marks]
    sweep = {}
    if starts and ends:
        busy = sum(seconds.get("total", 0.0) for seconds in per_trial.values())
        sweep["trial slots idle"] = concurrency * (max(ends) - min(starts)) - busy
        if started is not None:
            sweep["Ray and Tune start-up, before the first trial"] = min(starts) - started
        if ended is not None:
            sweep["after the last trial (outputs, Ray shut-down)"] = ended - max(ends)
    return {"trials": per_trial, "sweep": sweep}


def run_sweep(directory: Path, trials: int, concurrency: int) -> tuple[float, float, Path]:
    """``(start, end, sweep directory)`` of a ``lambda-dpo sweep`` process."""
    command = [sys.executable, "-m", "lambda_dpo.cli", "sweep", SWEEP_CONFIG, f"searcher.num_trials={trials}",
               f"searcher.max_concurrent={concurrency}", "name=overhead", f"storage_path={directory}"]
    started = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return started, time.time(), directory / "overhead"


def run_plain(sweep_dir: Path, directory: Path) -> tuple[float, float, dict[str, tuple[float, Path]]]:
    """Each trial's resolved config as a plain ``lambda-dpo train``, all side by side, its own
    reference log-probs; ``(start, end of the last, {trial: (its end, its run directory)})``."""
    processes = {}
    started = time.time()
    for run in sorted((sweep_dir / "runs").iterdir()):
        out = directory / run.name
        command = [sys.executable, "-m", "lambda_dpo.cli", "train", str(run / "config.yaml"), f"output_dir={out}", "reference_cache=null"]
        processes[run.name] = (subprocess.Popen(command, stdout=subprocess.DEVNULL), out)
    ends = {}
    for name, (process, out) in processes.items():
        if process.wait() != 0:
            raise SystemExit(f"the plain run of {name} failed (exit {process.returncode}); see {out}")
        ends[name] = (time.time(), out)
    return started, max(end for end, _ in ends.values()), ends


def medians(per_run: dict[str, dict[str, float]]) -> dict[str, float]:
    names = [name for name, _, _ in PHASES] + ["of which checkpoints and reports", "total"]
    return {name: statistics.median(seconds[name] for seconds in per_run.values() if name in seconds)
            for name in names if any(name in seconds for seconds in per_run.values())}


def print_table(sweep: dict, plain: dict | None) -> None:
    trial_medians = medians(sweep["trials"])
    plain_medians = medians(plain) if plain else {}
    header = f"{'phase (median over runs, s)':<48}{'sweep trial':>12}" + (f"{'plain run':>12}" if plain else "")
    print(header)
    for name, value in trial_medians.items():
        print(f"{name:<48}{value:>12.1f}" + (f"{plain_medians[name]:>12.1f}" if name in plain_medians else ("" if not plain else f"{'—':>12}")))
    for name, value in sweep["sweep"].items():
        print(f"{'sweep: ' + name:<48}{value:>12.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--sweep-dir", type=Path, help="only the phase table of this finished sweep directory")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.sweep_dir:
        print_table(sweep_phases(args.sweep_dir, concurrency=args.concurrency), None)
        return 0
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as scratch:
        scratch = Path(scratch)
        sweep_start, sweep_end, sweep_dir = run_sweep(scratch / "sweeps", args.trials, args.concurrency)
        plain_start, plain_end, plain_runs = run_plain(sweep_dir, scratch / "plain")
        sweep = sweep_phases(sweep_dir, sweep_start, sweep_end, args.concurrency)
        plain = {name: phase_seconds(timings.read_marks(out), started=plain_start, ended=end) for name, (end, out) in plain_runs.items()}
    sweep_seconds, plain_seconds = sweep_end - sweep_start, plain_end - plain_start
    ratio = sweep_seconds / plain_seconds
    print(f"{args.trials} trials, {args.concurrency} at a time: the sweep {sweep_seconds:.1f} s, the same fine-tunes as plain "
          f"`lambda-dpo train` processes side by side {plain_seconds:.1f} s: {ratio:.2f}× (target ≤ {TARGET_RATIO})")
    print_table(sweep, plain)
    if args.json:
        args.json.write_text(json.dumps({"trials": args.trials, "concurrency": args.concurrency, "sweep_seconds": sweep_seconds,
                                         "plain_seconds": plain_seconds, "ratio": ratio, "sweep": sweep, "plain": plain}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
