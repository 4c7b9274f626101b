"""The device check runs on CPU (``--smoke``) before device time is spent on it, and its arithmetic is right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


@pytest.fixture
def check(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    return gpu_check


def test_the_smoke_check_measures_every_variant_and_the_bf16_agreement(check, tmp_path, capsys):
    path = tmp_path / "check.json"
    assert check.main(["--smoke", "--json", str(path), "--peak-tflops", "0.5"]) == 0
    results = json.loads(path.read_text())
    assert results["errors"] == []
    rows = results["throughput"]
    assert [(row["finetune"], row["variant"]) for row in rows] == [(finetune, variant) for finetune, _ in check.FINETUNES for variant in check.VARIANTS]
    for row in rows:
        assert row["tokens_per_second"] > 0 and row["peak_memory_mb"] > 0
        assert 0 < row["mfu"] < 1  # against the stated peak (0.5 TFLOP/s: above what 2 CPU cores reach on the tiny model)
    for figures in results["bf16_agreement"]["tiny (random init)"].values():
        assert figures["dtype"] == "float32"  # log-probs come back in fp32 whatever the forward ran in
        assert 0 < figures["padded"] <= figures["tolerance"] and 0 < figures["packed"] <= figures["tolerance"]  # > 0: it did run in bf16
    assert "bf16 peak: 0.5 TFLOP/s (--peak-tflops)" in capsys.readouterr().out


def test_mfu_counts_each_variants_forwarded_and_projected_tokens(check):
    args = check.throughput_args(check.workloads(smoke=True)["tiny (random init)"], check.parse_args(["--smoke"]))
    flops = check.step_flops(args)
    padded, packed, trl = check.throughput.PADDED, check.throughput.PACKED, check.throughput.TRL_PRECOMPUTED
    assert flops.projected[padded] == flops.projected[packed]  # both score every response token, once
    assert flops.forwarded[packed] < flops.forwarded[padded]  # each prompt once instead of once per response
    assert flops.projected[trl] == flops.forwarded[trl]  # TRL's head runs on every position
    model = check.throughput.build_model(args, check.throughput.build_data(args)[1])
    head = model.get_output_embeddings().weight.numel()
    assert flops.head_parameters == head
    assert flops.decoder_parameters == sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel() - 0 * head  # tied
    expected = 6 * (flops.decoder_parameters * flops.forwarded[padded] + head * flops.projected[padded]) / 2.0 / 1e12
    assert flops.mfu(padded, 2.0, lora=False, peak_tflops=1.0) == pytest.approx(expected)
    assert flops.mfu(padded, 2.0, lora=True, peak_tflops=1.0) == pytest.approx(expected * 4 / 6)
    assert flops.mfu(padded, 2.0, lora=False, peak_tflops=None) is None


@pytest.mark.parametrize(("name", "peak"), [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
                                            ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L4", 121.0), ("NVIDIA L40S", 362.0)])
def test_the_peak_is_the_cards_own(check, name, peak):
    assert check.card_bf16_peak(name)[0] == peak


def test_an_unknown_card_has_no_peak_and_says_how_to_give_one(check):
    assert check.card_bf16_peak("Some Future GPU") is None
    assert check.bf16_peak_tflops(torch.device("cpu"), None) == (None, "n/a on CPU")


def test_the_flex_mask_is_the_packed_layouts_visibility(check, tiny_tokenizer):
    from torch.nn.attention.flex_attention import create_mask

    from lambda_dpo.data.collate import ListwiseCollator
    from lambda_dpo.data.encoding import EncodedExample
    from lambda_dpo.data.packing import LayoutSettings, attends

    import numpy as np

    examples = [EncodedExample(0, (5, 6, 7), ((8, 9), (10,), (11, 12, 13)), np.ones((1, 3))),
                EncodedExample(1, (14, 15), ((16,), (17, 18)), np.ones((1, 2)))]
    batch = ListwiseCollator(0)(examples)
    layout = LayoutSettings("shared_prefix", 12, 0).of(batch)  # both prompts in one row of 12, the rest padding
    rows, length = layout.segments.shape
    dense = create_mask(check.tree_mask_mod(layout), rows, None, length, length, device="cpu")
    assert torch.equal(dense[:, 0], attends(layout.segments, layout.branches))


@pytest.mark.integration
def test_flex_attention_scores_a_packed_batch_as_the_tree_attention_does(check):
    options = check.parse_args(["--smoke", "--flex"])
    compared = check.flex_against_tree(check.workloads(smoke=True)["tiny (random init)"], options)
    assert compared["max_abs_mean_logp_gap"] < 0.01  # both in bf16: within its rounding
    assert compared["timed"].startswith("forward (") and compared["flex_seconds"] > 0 and compared["tree_seconds"] > 0
