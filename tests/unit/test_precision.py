"""Precision settings: what auto means on each device, and the one-line refusals."""

from __future__ import annotations

import pytest
import torch

from lambda_dpo import precision
from lambda_dpo.cli import main
from lambda_dpo.precision import check_precision, resolve_autocast, resolve_dtype

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_is_bf16_weights_and_autocast_on_a_gpu_and_fp32_without_autocast_on_cpu():
    assert (resolve_dtype("auto", CUDA), resolve_autocast("auto", CUDA)) == (torch.bfloat16, torch.bfloat16)
    assert (resolve_dtype("auto", CPU), resolve_autocast("auto", CPU)) == (torch.float32, None)
    assert (resolve_dtype("bfloat16", CPU), resolve_autocast("bfloat16", CPU), resolve_autocast("none", CUDA)) == (torch.bfloat16, torch.bfloat16, None)


def test_bf16_runs_on_this_cpu():
    check_precision(torch.bfloat16, torch.bfloat16, CPU)


@pytest.mark.parametrize(("weights", "autocast", "key", "fix"), [(torch.bfloat16, None, "model.dtype", "model.dtype=float32"),
                                                                 (torch.float32, torch.bfloat16, "model.autocast", "model.autocast=none")])
def test_a_gpu_without_bf16_is_refused_in_one_line_naming_it_and_the_fix(monkeypatch, weights, autocast, key, fix):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    with pytest.raises(ValueError) as error:
        check_precision(weights, autocast, CUDA)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{key} bfloat16: Tesla V100-SXM2-16GB has no bf16") and fix in message


def test_an_op_the_build_lacks_in_bf16_stops_training_with_one_line(monkeypatch, tmp_path, capsys):
    def missing(dtype, device, *, autocast):
        raise RuntimeError("\"addmm_impl_cpu_\" not implemented for 'BFloat16'\nmore of torch's text")

    monkeypatch.setattr(precision, "_probe", missing)
    code = main(["train", "configs/train/tiny.yaml", "model.dtype=bfloat16", "data.source=synthetic:64", "sft.steps=0", f"output_dir={tmp_path / 'run'}"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert lines[-1] == ("lambda-dpo train: error: model.dtype bfloat16 cannot run on cpu with this torch build "
                         "(\"addmm_impl_cpu_\" not implemented for 'BFloat16'); set model.dtype=float32")
    assert not any("Traceback" in line for line in lines)


def test_float16_training_is_refused_before_anything_loads(capsys):
    assert main(["train", "configs/train/tiny.yaml", "model.dtype=float16", "--dry-run"]) == 2
    assert "model.dtype float16: training in float16 needs loss scaling" in capsys.readouterr().err
