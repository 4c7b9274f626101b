"""The training-throughput benchmark: its variants run and measure the same work."""

from __future__ import annotations

from pathlib import Path

import pytest

PATH = Path(__file__).parents[2] / "benchmarks" / "train_throughput.py"


@pytest.mark.integration
def test_the_conditioned_variant_costs_more_per_step_than_the_plain_one(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(PATH.parent))  # each variant's spawned process imports the script by name
    import train_throughput as bench

    assert bench.main(["--variants", bench.PADDED, bench.CONDITIONED, "--steps", "3", "--warmup", "1"]) == 0
    rows = {line[:21].strip(): line[21:].split() for line in capsys.readouterr().out.splitlines()}
    plain, conditioned = rows[bench.PADDED], rows[bench.CONDITIONED]
    assert float(plain[0].replace(",", "")) > 0 and float(conditioned[0].replace(",", "")) > 0
    assert float(conditioned[1]) > float(plain[1])  # s/step: the preamble makes every sequence longer


@pytest.mark.integration
def test_a_pretrained_model_is_measured_with_its_own_weights_and_tokenizer(capsys, monkeypatch, tiny_pretrained):
    monkeypatch.syspath_prepend(str(PATH.parent))
    import train_throughput as bench

    assert bench.main(["--model", str(tiny_pretrained), "--variants", bench.PADDED, "--steps", "2", "--warmup", "1", "--lora-r", "4"]) == 0
    out = capsys.readouterr().out
    assert f"workload: {tiny_pretrained} (pretrained), LoRA r4" in out
    examples, tokenizer, model = bench.build(bench.parse_args(["--model", str(tiny_pretrained), "--batch-size", "2", "--steps", "1"]))
    assert len(tokenizer) == model.get_input_embeddings().num_embeddings == 400  # the directory's own tokenizer, not a trained one
    with pytest.raises(SystemExit):
        bench.main(["--model", str(tiny_pretrained), "--keep-vocab"])



@pytest.mark.integration
def test_packed_and_padded_steps_score_the_same_tokens_and_trl_runs_beside_them(capsys, monkeypatch, tiny_pretrained):
    monkeypatch.syspath_prepend(str(PATH.parent))
    import train_throughput as bench

    args = bench.parse_args(["--model", str(tiny_pretrained), "--profile", "ultrafeedback", "--steps", "2", "--warmup", "1", "--batch-size", "2", "--lora-r", "4"])
    padded, packed = bench.run_ours(args), bench.run_ours(args, packed=True)
    tokens = lambda row: row["tokens_per_second"] * row["seconds_per_step"] * args.steps  # noqa: E731
    assert tokens(packed) == pytest.approx(tokens(padded), rel=1e-6) and tokens(padded) > 2 * 4 * 50  # UltraFeedback-length responses
    for precompute in (False, True):
        row = bench.run_trl(args, precompute=precompute)
        assert row["tokens_per_second"] > 0 and row["seconds_per_step"] > 0
    pairs = bench.best_and_worst(bench.ultrafeedback_shaped(6, ["a", "b"]), ["a", "b"])
    assert len(pairs) == 6 and all(chosen != rejected for chosen, rejected in pairs)


def test_ultrafeedback_shaped_lengths_have_the_published_medians():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_throughput", PATH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    examples = bench.ultrafeedback_shaped(400, ["a", "b"])
    import numpy as np

    prompts = np.median([len(e.prompt.split()) for e in examples])
    responses = np.median([len(r.split()) for e in examples for r in e.responses])
    assert abs(prompts - 121) < 15 and abs(responses - 144) < 10  # words: about one token each
