"""The command line's error policy: one line for input the user can fix, a traceback for the rest."""

import argparse

import numpy as np
import pytest
import torch

from lambda_dpo import cli
from lambda_dpo.cli import main, user_error_message


def parser_raising(error: BaseException):
    def build():
        parser = argparse.ArgumentParser(prog="lambda-dpo")
        sub = parser.add_subparsers(dest="command", required=True)
        command = sub.add_parser("boom")

        def handler(args):
            raise error

        command.set_defaults(handler=handler)
        return parser

    return build


def test_our_own_checks_are_one_line_errors(capsys):
    from lambda_dpo.lambdas import validate_lambda

    with pytest.raises(ValueError) as raised:
        validate_lambda([0.5, 0.6], 2)
    assert user_error_message(raised.value) == str(raised.value)


def test_a_value_error_from_inside_a_library_keeps_its_traceback():
    """scikit-learn's "Input contains NaN" used to come out as a bare one-liner naming nothing."""
    from sklearn.metrics import ndcg_score

    with pytest.raises(ValueError) as raised:
        ndcg_score(np.array([[1.0, np.nan]]), np.array([[1.0, 2.0]]))
    assert user_error_message(raised.value) is None


def test_an_unexpected_runtime_error_propagates_with_its_traceback(monkeypatch):
    def deep():
        return torch.zeros(2) @ torch.zeros(3)  # raised inside torch

    with pytest.raises(RuntimeError) as raised:
        deep()
    monkeypatch.setattr(cli, "build_parser", parser_raising(raised.value))
    with pytest.raises(RuntimeError):
        main(["boom"])


def test_out_of_memory_prints_a_hint_and_keeps_the_traceback(monkeypatch, capsys):
    monkeypatch.setattr(cli, "build_parser", parser_raising(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")))
    with pytest.raises(torch.OutOfMemoryError):
        main(["boom"])
    hint = capsys.readouterr().err
    assert "out of memory" in hint and "optim.batch_size" in hint and "gradient_checkpointing" in hint and "lora" in hint


def test_a_path_that_is_a_directory_is_a_one_line_error_naming_it(tmp_path, capsys):
    """`schedule fit --out DIR` used to end in a raw IsADirectoryError traceback."""
    assert main(["schedule", "fit", "--observations", "search/examples/paper_five_points.csv", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"lambda-dpo schedule: error: {tmp_path}: Is a directory"


@pytest.mark.parametrize(("response", "said"), [("", "no text, ending at once"), ("  \n", "only whitespace")])
def test_generate_shows_the_prompt_and_says_when_the_model_produced_nothing(monkeypatch, capsys, response, said):
    """`generate` on the tiny checkpoint used to print a blank line and exit 0."""
    import lambda_dpo.commands as commands
    import lambda_dpo.generate as generate

    monkeypatch.setattr(commands, "checked_lambda", lambda checkpoint, text: (["a", "b"], None))
    monkeypatch.setattr(generate, "Generator", lambda checkpoint: lambda prompt, **options: response)
    assert main(["generate", "ckpt", "Say something."]) == 0
    out = capsys.readouterr().out
    assert "prompt: Say something." in out and f"response: (none: the model produced {said})" in out
