"""The training-throughput benchmark's λ-conditioned variant."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambda_dpo.conditioning import preamble_corpus

PATH = Path(__file__).parents[2] / "benchmarks" / "train_throughput.py"


def test_the_preamble_corpus_covers_every_vertex_then_dirichlet_draws():
    texts = list(preamble_corpus(["a", "b", "c"], seed=0, count=5))
    assert len(texts) == 8
    assert texts[0].startswith("preference weights: a=1.00 b=0.00 c=0.00")
    assert texts == list(preamble_corpus(["a", "b", "c"], seed=0, count=5))


@pytest.mark.integration
def test_the_conditioned_variant_costs_more_per_step_than_the_plain_one(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(PATH.parent))  # each variant's spawned process imports the script by name
    import train_throughput as bench

    assert bench.main(["--variants", "ours", bench.CONDITIONED, "--steps", "3", "--warmup", "1"]) == 0
    rows = {line[:22].strip(): line[22:].split() for line in capsys.readouterr().out.splitlines()}
    plain, conditioned = rows["ours"], rows[bench.CONDITIONED]
    assert float(plain[0].replace(",", "")) > 0 and float(conditioned[0].replace(",", "")) > 0
    assert float(conditioned[1]) > float(plain[1])  # s/step: the preamble makes every sequence longer
