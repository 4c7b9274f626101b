"""The training-throughput benchmark's λ-conditioned variant."""

from __future__ import annotations

from pathlib import Path

import pytest

PATH = Path(__file__).parents[2] / "benchmarks" / "train_throughput.py"


@pytest.mark.integration
def test_the_conditioned_variant_costs_more_per_step_than_the_plain_one(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(PATH.parent))  # each variant's spawned process imports the script by name
    import train_throughput as bench

    assert bench.main(["--variants", "ours", bench.CONDITIONED, "--steps", "3", "--warmup", "1"]) == 0
    rows = {line[:22].strip(): line[22:].split() for line in capsys.readouterr().out.splitlines()}
    plain, conditioned = rows["ours"], rows[bench.CONDITIONED]
    assert float(plain[0].replace(",", "")) > 0 and float(conditioned[0].replace(",", "")) > 0
    assert float(conditioned[1]) > float(plain[1])  # s/step: the preamble makes every sequence longer


@pytest.mark.integration
def test_a_pretrained_model_is_measured_with_its_own_weights_and_tokenizer(capsys, monkeypatch, tiny_pretrained):
    monkeypatch.syspath_prepend(str(PATH.parent))
    import train_throughput as bench

    assert bench.main(["--model", str(tiny_pretrained), "--variants", "ours", "--steps", "2", "--warmup", "1", "--lora-r", "4"]) == 0
    out = capsys.readouterr().out
    assert f"workload: {tiny_pretrained} (pretrained), LoRA r4" in out
    examples, tokenizer, model = bench.build(bench.parse_args(["--model", str(tiny_pretrained), "--batch-size", "2", "--steps", "1"]))
    assert len(tokenizer) == model.get_input_embeddings().num_embeddings == 400  # the directory's own tokenizer, not a trained one
    with pytest.raises(SystemExit):
        bench.main(["--model", str(tiny_pretrained), "--keep-vocab"])

