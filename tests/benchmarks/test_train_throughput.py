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
