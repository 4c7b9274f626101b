"""The real-model claims benchmark: its plan, the claims it reads off finished runs, and (real model) a 2-prompt run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).parents[2] / "benchmarks" / "real_model_claims.py"
CONFIG = "configs/train/smollm2-135m-verifiable.yaml"
DIMENSIONS = ["instruction_following", "correctness", "conciseness", "detail"]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(PATH.parent))
    import real_model_claims

    return real_model_claims


def test_the_plan_changes_only_loss_lambda_seed_and_conditioning(bench):
    from lambda_dpo.train_config import load_train_config

    runs = bench.plan(DIMENSIONS, [0, 1, 2])
    names = [run.name for run in runs]
    assert names[:2] == ["lambda-dpo-s0", "dpo-s0"] and len(names) == len(set(names)) == 6 + 4 + 2 + 2
    base = load_train_config(CONFIG)
    for run in runs:
        config = load_train_config(CONFIG, list(run.overrides))  # every override is a real key
        assert (config.optim, config.data, config.model, config.loss.beta) == (base.optim, base.data, base.model, base.loss.beta), run.name
    by_name = {run.name: load_train_config(CONFIG, list(run.overrides)) for run in runs}
    assert by_name["dpo-s1"].loss.name == "dpo" and by_name["dpo-s1"].lambdas.weights == pytest.approx([0.25] * 4)
    assert by_name["one-hot-correctness"].lambdas.weights == [0, 1, 0, 0] and by_name["one-hot-correctness"].lambdas.sampler == "fixed"
    assert by_name["steer-numbers"].conditioning == "prompt" and by_name["steer-numbers"].preamble == "numbers"
    assert by_name["steer-mix"].preamble == "numbers+mix" and by_name["steer-mix"].lambdas.sampler == "dirichlet"
    assert [run.seed for run in runs if run.arm == "λ-DPO, centroid"] == [0, 1, 2]


def write_run(out: Path, name: str, arm: str, scores: np.ndarray, *, seed: int = 0, vertex_scores: dict | None = None) -> None:
    """A finished run: ``scores`` [prompts, m] per-dimension generation scores (centroid mixed)."""
    run_dir = out / name
    run_dir.mkdir(parents=True)

    def rows(matrix):
        return [{"record_id": f"p{i}", "prompt": "", "response": "a b c", "new_tokens": 3, "finished": True,
                 "scores": dict(zip(DIMENSIONS, map(float, row))), "mixed": float(np.mean(row))} for i, row in enumerate(matrix)]

    (run_dir / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(scores)))
    for dimension, matrix in (vertex_scores or {}).items():
        (run_dir / f"generations-{dimension}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(matrix)))
    metrics = {"verifiable/mixed": float(scores.mean()), "generation/mean_words": 3.0, "top1_accuracy/mixed": 0.5, "reward_margin": 0.1,
               **{f"{family}/{d}": float(value) for family in ("reward_accuracy", "top1_accuracy") for d, value in zip(DIMENSIONS, scores.mean(axis=0))}}
    (run_dir / "result.json").write_text(json.dumps({"name": name, "arm": arm, "seed": seed, "metrics": metrics, "seconds": 60.0, "checkpoint": f"{name}/checkpoints/step-1"}))


def test_the_report_reads_the_three_claims_off_the_finished_runs(bench, tmp_path):
    from lambda_dpo.conditioning import steerability

    rng = np.random.default_rng(0)
    prompts = 40
    base = rng.uniform(0.3, 0.5, (prompts, 4))
    runs = bench.plan(DIMENSIONS, [0, 1])
    for seed in (0, 1):
        write_run(tmp_path, f"lambda-dpo-s{seed}", "λ-DPO, centroid", base + 0.1, seed=seed)
        write_run(tmp_path, f"dpo-s{seed}", "DPO, centroid", base, seed=seed)
    for k, dimension in enumerate(DIMENSIONS):
        lifted = base.copy()
        lifted[:, k] += 0.3 if k != 3 else -0.2  # detail's one-hot run is worst on detail: 3 of 4
        write_run(tmp_path, f"one-hot-{dimension}", f"one-hot {dimension}", lifted)
    # Steered by numbers: each e_k lifts its own dimension by 0.15 (the one-hot runs' own lift is about 0.3).
    vertices = {d: base + 0.15 * np.eye(4)[k] for k, d in enumerate(DIMENSIONS)}
    write_run(tmp_path, "steer-numbers", "steered (numbers)", base + 0.08, vertex_scores=vertices)
    write_run(tmp_path, "reference", "reference (untrained)", base - 0.05)
    ranking = np.full((4, 4), 0.5) + 0.1 * np.eye(4)  # its implicit reward reads λ: each e_k ranks its own dimension 0.1 better
    (tmp_path / "steer-numbers" / "steerability.json").write_text(json.dumps({"dimensions": DIMENSIONS, "accuracy": ranking.tolist(), "steerability": 0.1, "centroid": {}}))

    text = bench.report(tmp_path, runs, DIMENSIONS, {d: 10 + k for k, d in enumerate(DIMENSIONS)})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["one_hot"]["wins"] == summary["one_hot"]["ranking_wins"] == DIMENSIONS[:3] and "in 3 of 4 dimensions" in text
    assert "instruction_following 10, correctness 11, conciseness 12, detail 13." in text
    margins = summary["one_hot"]["margins"]
    assert margins["conciseness"][:3] == pytest.approx([0.3, 0.3, 0.3]) and margins["detail"][0] == pytest.approx(-0.2)  # every other run is at base
    assert summary["pair"]["seeds"] == [0, 1] and summary["pair"]["difference"][0] == pytest.approx(0.1)
    low, high = summary["pair"]["difference"][1:]
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)  # the same lift on every prompt
    steer = summary["steering"]["steer-numbers"]
    assert steer["steerability"] == pytest.approx(0.15) and steer["centroid_cost"][0] == pytest.approx(0.02)
    assert steer["ratio"] == pytest.approx(0.15 / summary["one_hot"]["steerability"])
    assert steer["one_hot_steerability"][0] == pytest.approx(summary["one_hot"]["steerability"])
    assert steer["steerability_interval"] == pytest.approx([0.15, 0.15])  # the same lift on every prompt: no spread
    assert steer["ratio_interval"] == pytest.approx([steer["ratio"]] * 2)  # every lift is the same on every prompt
    assert steer["centroid_row"] == pytest.approx(list((base + 0.08).mean(axis=0)))
    one_hot_top1 = np.array([(base + (0.3 if k != 3 else -0.2) * np.eye(4)[k]).mean(axis=0) for k in range(4)])
    assert steer["ranking"]["steerability"] == 0.1 and steer["ranking"]["one_hot_steerability"] == pytest.approx(steerability(one_hot_top1))
    assert "Steerability by ranking: +0.100; the four one-hot models' on the same metric: +0.175" in text
    assert "| centroid |" in text and "ratio " in text and "same bootstrap resamples of the 40 prompts" in text
    assert "steer-mix: not finished" in text and "(10/13 runs finished)" in text
    assert (tmp_path / "one_hot.png").stat().st_size > 0 and (tmp_path / "trade_off.png").stat().st_size > 0
    arms = summary["arms"]
    assert arms["λ-DPO, centroid"]["seeds"] == [0, 1] and arms["λ-DPO, centroid"]["scores"]["verifiable/mixed"][0] == pytest.approx(float((base + 0.1).mean()))
    assert arms["λ-DPO, centroid"]["gain_over_untrained"][0] == pytest.approx(0.15) and arms["reference (untrained)"]["gain_over_untrained"] is None
    assert arms["reference (untrained)"]["held_out"]["top1_accuracy/mixed"] != arms["reference (untrained)"]["held_out"]["top1_accuracy/mixed"]  # NaN: no ranking


def test_the_steerability_ratio_is_paired_by_prompt(bench):
    """The steered run's lift is half the one-hot runs' on every prompt, though the lift varies from
    prompt to prompt: each steerability has a spread over resamples of prompts, their ratio none."""
    rng = np.random.default_rng(1)
    prompts, m = 30, len(DIMENSIONS)
    base, lift = rng.uniform(0.2, 0.4, (prompts, m)), rng.uniform(0.0, 0.4, (prompts, 1))

    def rows(matrix):
        return [{"record_id": f"p{i}", "scores": dict(zip(DIMENSIONS, map(float, row)))} for i, row in enumerate(matrix)]

    one_hot = [bench.Finished(bench.Run(f"one-hot-{d}", "one-hot"), {}, {"centroid": rows(base + lift * np.eye(m)[k])}) for k, d in enumerate(DIMENSIONS)]
    steered = bench.Finished(bench.Run("steer-mix", "steered"), {}, {d: rows(base + 0.5 * lift * np.eye(m)[k]) for k, d in enumerate(DIMENSIONS)})
    bounds = bench.steerability_intervals(steered, one_hot, DIMENSIONS, resamples=500)
    assert bounds["prompts"] == prompts and bounds["one_hot"][0] == pytest.approx(float(lift.mean()))
    assert bounds["one_hot"][1] < bounds["one_hot"][0] - 0.02 and bounds["steered"][2] > bounds["steered"][0] + 0.01
    assert bounds["ratio"] == pytest.approx([0.5, 0.5, 0.5])


def test_the_fixed_lambda_runs_become_a_sweeps_warm_start(bench, tmp_path):
    from search.sweep_config import SweepConfig, SearcherConfig, build_searcher, warm_start_rows
    from lambda_dpo.train_config import load_train_config

    prompts = np.full((4, 4), 0.4)
    for name, arm in (("lambda-dpo-s0", "λ-DPO, centroid"), ("dpo-s0", "DPO, centroid")):
        write_run(tmp_path, name, arm, prompts)
    write_run(tmp_path, "steer-mix", "steered (mix)", prompts, vertex_scores={d: prompts for d in DIMENSIONS})
    write_run(tmp_path, "one-hot-detail", "one-hot detail", prompts + 0.2)
    bench.report(tmp_path, bench.plan(DIMENSIONS, [0]), DIMENSIONS)
    table = (tmp_path / "observations.csv").read_text().splitlines()
    assert table[0] == "run,seed," + ",".join(f"lambda/{d}" for d in DIMENSIONS) + ",objective" and len(table) == 3  # DPO and steered runs are not λ points

    config = SweepConfig(train=load_train_config(CONFIG), searcher=SearcherConfig(warm_start=str(tmp_path / "observations.csv")))
    lambdas, scores = warm_start_rows(config)
    assert lambdas.tolist() == [[0.25] * 4, [0, 0, 0, 1]] and scores == pytest.approx([0.4, 0.6])
    assert len(build_searcher(config).observations) == 2


def test_the_training_signal_counts_prompts_whose_ratings_differ(bench):
    signal = bench.training_signal(CONFIG, [])
    assert list(signal) == DIMENSIONS and all(0 < count <= 280 for count in signal.values())
    assert min(signal, key=signal.get) == "correctness"  # few word problems are ever answered right


def test_without_the_one_hot_runs_the_report_says_what_it_waits_for(bench, tmp_path):
    write_run(tmp_path, "lambda-dpo-s0", "λ-DPO, centroid", np.full((4, 4), 0.5))
    text = bench.report(tmp_path, bench.plan(DIMENSIONS, [0]), DIMENSIONS)
    assert "waiting for the one-hot runs (0/4 finished)" in text and "waiting for a seed with both runs" in text


def test_only_trains_the_named_runs_and_refuses_unknown_names(bench, tmp_path, monkeypatch, capsys):
    trained = []
    monkeypatch.setattr(bench, "execute", lambda run, config, overrides, out: trained.append(run.name) or {"seconds": 60.0, "metrics": {}})
    monkeypatch.setattr(bench, "report", lambda *args: "")
    assert bench.main(["--out", str(tmp_path), "--only", "orpo", "simpo"]) == 0
    assert trained == ["simpo", "orpo"]  # in the plan's order
    assert "[14/15 0 min] simpo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as error:
        bench.main(["--out", str(tmp_path), "--only", "simpo", "lambda-dpo-s9"])
    assert error.value.code == 2 and "--only: no run named lambda-dpo-s9; the runs are reference, lambda-dpo-s0" in capsys.readouterr().err


@pytest.mark.real_model
def test_the_benchmark_runs_end_to_end_on_two_held_out_prompts_and_resumes(bench, tmp_path, capsys):
    # 40 prompts: 12 held out, of which the first 2 are scored; one step of 2 prompts per run.
    cut = ["data.limit=40", "eval.limit=2", "optim.max_steps=1", "optim.batch_size=2", "optim.gradient_accumulation=1", "eval.max_new_tokens=8"]
    assert bench.main(["--out", str(tmp_path), "--seeds", "0", "--", *cut]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["arms"]) == {"reference (untrained)", "λ-DPO, centroid", "DPO, centroid", "SimPO", "ORPO", *(f"one-hot {d}" for d in DIMENSIONS),
                                    "steered (mix)", "steered (numbers)"}
    assert summary["one_hot"] is not None and set(summary["steering"]) == {"steer-mix", "steer-numbers"}
    assert len((tmp_path / "steer-mix" / "generations-detail.jsonl").read_text().splitlines()) == 2
    assert len(list((tmp_path / "reference_logps").glob("*.pt"))) == 2  # one cache for every run
    assert not any((tmp_path / run).joinpath("reference_logps").exists() for run in ("dpo-s0", "simpo", "steer-mix"))
    capsys.readouterr()
    bench.main(["--out", str(tmp_path), "--seeds", "0", "--", *cut])  # a rerun trains nothing again
    printed = capsys.readouterr().out
    assert "[11/11" in printed and printed.count("(finished earlier)") == 11
