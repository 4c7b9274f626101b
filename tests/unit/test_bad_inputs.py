"""Bad input of every kind the command line reads — config, data, λ, schedule and checkpoint
files — gets a one-line error that names the problem (exit code 2), or a counted skip; never a
traceback. The classes and what each gets are listed in docs/bad-inputs.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lambda_dpo.cli import main
from tests.factories import DIMENSIONS, same_ratings, uf_record

TINY = str(Path("configs/train/tiny.yaml").absolute())
TINY_SWEEP = str(Path("configs/sweep/tiny.yaml").absolute())
SCHEDULE = Path("search/examples/tiny-sweep/schedule.json").absolute()
OBSERVATIONS = Path("search/examples/paper_five_points.csv").absolute()


def listwise(**changes) -> dict:
    record = {"prompt": "Why?", "responses": ["Because.", "No idea."], "ratings": {d: [4, 2] for d in DIMENSIONS}}
    record.update(changes)
    return record


def with_rating(dimension: str, values) -> dict:
    return listwise(ratings={d: (values if d == dimension else [4, 2]) for d in DIMENSIONS})


def uf(mutate) -> dict:
    record = uf_record("Why?", [("Because.", same_ratings("5")), ("No idea.", same_ratings("2"))])
    mutate(record)
    return record


def good_lines(n: int = 2) -> str:
    return "".join(json.dumps(listwise(prompt=f"Q{i}?")) + "\n" for i in range(n))


# ----------------------------------------------------------------------------- data files

# (id, file name, content (str, bytes or a list of records), extra `data check` flags, expected message)
DATA_CASES = [
    ("empty-file", "d.jsonl", "", [], "the file is empty"),
    ("blank-lines-only", "d.jsonl", "\n  \n\n", [], "the file is empty"),
    ("non-utf8-line", "d.jsonl", good_lines().encode() + b'{"prompt": "\xff\xfe"}\n', [], "d.jsonl:3: field '(line)': is not UTF-8 text"),
    ("malformed-json-line", "d.jsonl", good_lines() + '{"prompt": "Why?", \n', [], "d.jsonl:3: field '(line)': is not valid JSON"),
    ("json-scalar-line", "d.jsonl", good_lines() + "42\n", [], "field '(record)': must be a JSON object, got int"),
    ("broken-json-array", "d.json", '[{"prompt": "x"', [], "not a valid JSON array of records"),
    ("no-known-columns", "d.jsonl", [{"question": "Why?", "answers": ["a", "b"]}], [], "cannot tell the data format"),
    ("unsupported-suffix", "d.txt", "hello", [], "unsupported file type '.txt'"),
    ("missing-prompt", "d.jsonl", [listwise(prompt=None)], [], "field 'prompt': is missing"),
    ("empty-prompt", "d.jsonl", [listwise(prompt="  ")], [], "field 'prompt': is empty"),
    ("numeric-prompt", "d.jsonl", [listwise(prompt=7)], [], "field 'prompt': must be a non-empty string"),
    ("chat-message-without-role", "d.jsonl", [listwise(prompt=[{"content": "Hi"}])], [], "field 'prompt[0]': chat messages need"),
    ("chat-messages-all-empty", "d.jsonl", [listwise(prompt=[{"role": "user", "content": " "}])], [], "every message is empty"),
    ("missing-responses", "d.jsonl", [listwise(responses=None)], [], "field 'responses': is missing"),
    ("responses-a-string", "d.jsonl", [listwise(responses="Because.")], [], "field 'responses': must be a list of strings"),
    ("one-response", "d.jsonl", [listwise(responses=["Because."], ratings={d: [4] for d in DIMENSIONS})], [], "has 1 response; at least 2"),
    ("empty-response", "d.jsonl", [listwise(responses=["Because.", ""])], [], "field 'responses[1]': response text is empty"),
    ("numeric-response", "d.jsonl", [listwise(responses=["Because.", 3])], [], "field 'responses[1]'"),
    ("missing-ratings", "d.jsonl", [listwise(ratings=None)], [], "field 'ratings': is missing"),
    ("ratings-a-list", "d.jsonl", [listwise(ratings=[4, 2])], [], "field 'ratings': must map each dimension"),
    ("dimension-missing", "d.jsonl", [listwise(ratings={"honesty": [4, 2]})], [], "field 'ratings.helpfulness': is missing"),
    ("too-few-ratings", "d.jsonl", [with_rating("honesty", [4])], [], "field 'ratings.honesty': has 1 ratings for 2 responses"),
    ("too-many-ratings", "d.jsonl", [with_rating("honesty", [4, 2, 1])], [], "has 3 ratings for 2 responses"),
    ("ratings-not-a-list", "d.jsonl", [with_rating("honesty", 4)], [], "has int ratings for 2 responses"),
    ("string-rating", "d.jsonl", [with_rating("honesty", [4, "high"])], [], "field 'ratings.honesty[1]': rating 'high' is not a number"),
    ("boolean-rating", "d.jsonl", [with_rating("honesty", [4, True])], [], "rating True is not a number or null"),
    ("nan-rating", "d.jsonl", good_lines(1) + '{"prompt": "Q", "responses": ["a", "b"], "ratings": {"helpfulness": [1, NaN], "honesty": [1, 2], "instruction_following": [1, 2], "truthfulness": [1, 2]}}\n', [], "rating nan is not finite"),
    ("infinite-rating", "d.jsonl", good_lines(1) + '{"prompt": "Q", "responses": ["a", "b"], "ratings": {"helpfulness": [1, Infinity], "honesty": [1, 2], "instruction_following": [1, 2], "truthfulness": [1, 2]}}\n', [], "rating inf is not finite"),
    ("rating-0-outside-declared-scale", "d.jsonl", [with_rating("honesty", [0, 2])], ["--rating-scale", "1,5"], "rating 0 is outside the rating scale [1, 5]"),
    ("rating-11-outside-declared-scale", "d.jsonl", [with_rating("honesty", [11, 2])], ["--rating-scale", "1,5"], "rating 11 is outside the rating scale [1, 5]"),
    ("rating-minus-3-outside-declared-scale", "d.jsonl", [with_rating("truthfulness", [-3, 2])], ["--rating-scale", "1,5"], "rating -3 is outside the rating scale"),
    ("rating-scale-reversed", "d.jsonl", good_lines(), ["--rating-scale", "5,1"], "rating_scale must be [low, high] with finite low < high"),
    ("rating-scale-one-number", "d.jsonl", good_lines(), ["--rating-scale", "5"], "rating_scale must be [low, high]"),
    ("rating-scale-not-numbers", "d.jsonl", good_lines(), ["--rating-scale", "low,high"], "--rating-scale must be comma-separated numbers"),
    ("uf-rating-11", "d.jsonl", [uf(lambda r: r["completions"][0]["annotations"]["honesty"].update(Rating="11"))], [], "rating '11' is outside the rating scale [1, 5]"),
    ("uf-rating-0", "d.jsonl", [uf(lambda r: r["completions"][1]["annotations"]["truthfulness"].update(Rating="0"))], [], "rating '0' is outside the rating scale [1, 5]"),
    ("uf-rating-word", "d.jsonl", [uf(lambda r: r["completions"][0]["annotations"]["honesty"].update(Rating="excellent"))], [], "rating 'excellent' is neither a number nor 'N/A'"),
    ("uf-missing-instruction", "d.jsonl", [uf(lambda r: r.update(instruction=None))], [], "field 'instruction'"),
    ("uf-completions-not-list", "d.jsonl", [uf(lambda r: r.update(completions={"a": 1}))], [], "field 'completions': is missing or not a list"),
    ("uf-completion-not-object", "d.jsonl", [uf(lambda r: r["completions"].append("text"))], [], "field 'completions[2]': must be an object"),
    ("uf-annotations-missing", "d.jsonl", [uf(lambda r: r["completions"][0].pop("annotations"))], [], "completions[0].annotations': is missing or not an object"),
    ("uf-aspect-without-rating", "d.jsonl", [uf(lambda r: r["completions"][0]["annotations"]["honesty"].pop("Rating"))], [], "has no 'Rating'"),
    ("uf-aspect-wrapped-twice", "d.jsonl", [uf(lambda r: r["completions"][0]["annotations"].update(honesty=[{"Rating": "1"}, {"Rating": "2"}]))], [], "list-wrapped aspect must have one element, has 2"),
    ("uf-empty-response", "d.jsonl", [uf(lambda r: r["completions"][0].update(response=""))], [], "completions[0].response': response text is empty"),
    ("every-record-bad-with-skip", "d.jsonl", [listwise(prompt=""), listwise(responses=["x"])], ["--on-bad-record", "skip"], "no usable records"),
]


def write_data(path: Path, content) -> Path:
    if isinstance(content, list):
        content = "".join(json.dumps(record) + "\n" for record in content)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def assert_one_line_error(capsys, rc: int, expected: str, command: str) -> None:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith(f"lambda-dpo {command}: error: "), err
    assert expected in lines[0], err


@pytest.mark.parametrize("name, content, flags, expected", [case[1:] for case in DATA_CASES], ids=[case[0] for case in DATA_CASES])
def test_bad_data_files_get_one_line_errors_naming_record_and_field(tmp_path, capsys, name, content, flags, expected):
    path = write_data(tmp_path / name, content)
    assert_one_line_error(capsys, main(["data", "check", str(path), *flags]), expected, "data")


def test_missing_data_and_empty_directories_name_the_path(tmp_path, capsys):
    assert_one_line_error(capsys, main(["data", "check", str(tmp_path / "gone.jsonl")]), "data file not found", "data")
    assert_one_line_error(capsys, main(["data", "check", str(tmp_path)]), "no .json, .jsonl or .parquet files", "data")


@pytest.mark.parametrize("bad_line", [b'{"prompt": \n', b'\xff\xfe\n', b"[1, 2]\n"], ids=["malformed-json", "non-utf8", "a-list"])
def test_skip_counts_lines_that_cannot_be_read_instead_of_stopping(tmp_path, capsys, bad_line):
    """`on_bad_record: skip` used to abort the whole load on a malformed JSON line."""
    path = write_data(tmp_path / "d.jsonl", good_lines(3).encode() + bad_line)
    assert main(["data", "check", str(path), "--on-bad-record", "skip"]) == 0
    assert "3 of 4 records loaded, 1 skipped" in capsys.readouterr().out


# ----------------------------------------------------------------------------- config files

CONFIG_FILE_CASES = [
    ("yaml-syntax-error", "model:\n  name_or_path: [configs\n", "not valid YAML at line 3"),
    ("yaml-tab-indent", "optim:\n\tmax_steps: 3\n", "not valid YAML at line 2"),
    ("yaml-list", "- a\n- b\n", "a config file must be a mapping of keys"),
    ("yaml-scalar", "42\n", "a config file must be a mapping of keys"),
    ("yaml-empty", "", "the config file is empty"),
    ("yaml-comments-only", "# nothing here\n", "the config file is empty"),
    ("unknown-top-level-key", "epochs: 3\n", "key 'epochs'"),
    ("unknown-nested-key", "optim:\n  lr: 0.1\n", "optim.lr"),
    ("wrong-type", "optim:\n  max_steps: many\n", "optim.max_steps"),
    ("section-not-a-mapping", "optim: 3\n", "optim"),
    ("bad-choice", "loss:\n  name: ipo\n", "loss.name must be one of"),
    ("nan-from-yaml", "loss:\n  beta: .nan\n", "loss.beta must be a finite number"),
]


@pytest.mark.parametrize("text, expected", [case[1:] for case in CONFIG_FILE_CASES], ids=[case[0] for case in CONFIG_FILE_CASES])
def test_bad_train_config_files_get_one_line_errors(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert_one_line_error(capsys, main(["train", str(path), "--dry-run"]), expected, "train")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, expected", [case[1:] for case in CONFIG_FILE_CASES[:6]], ids=[case[0] for case in CONFIG_FILE_CASES[:6]])
def test_bad_sweep_config_files_get_one_line_errors(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert_one_line_error(capsys, main(["sweep", str(path), "--dry-run"]), expected, "sweep")


OVERRIDE_CASES = [
    ("optim.learning_rate=-1", "optim.learning_rate must be > 0"),
    ("optim.learning_rate=0", "optim.learning_rate must be > 0"),
    ("optim.warmup_ratio=1.5", "optim.warmup_ratio must be in [0, 1)"),
    ("loss.beta=nan", "loss.beta must be a finite number"),
    ("loss.beta=inf", "loss.beta must be a finite number"),
    ("optim.max_grad_norm=-inf", "optim.max_grad_norm must be a finite number"),
    ("data.target_temperature=0", "data.target_temperature must be > 0"),
    ("data.max_length=16", "data.max_length (16) must exceed data.max_prompt_length"),
    ("data.rating_scale=[5,1]", "data.rating_scale must be [low, high]"),
    ("data.source=", "data"),
    ("eval.fraction=1", "eval.fraction must be in (0, 1)"),
    ("model.lora.dropout=1", "model.lora.dropout must be in [0, 1)"),
    ("model.dtype=float8", "model.dtype must be one of"),
    ("optim.bogus=1", "optim.bogus"),
    ("optim.batch_size=two", "optim.batch_size"),
    ("keep_checkpoints=0", "keep_checkpoints must be ≥ 1"),
    ("threads=0", "threads must be ≥ 1"),
]


@pytest.mark.parametrize("override, expected", OVERRIDE_CASES, ids=[case[0] for case in OVERRIDE_CASES])
def test_bad_overrides_are_refused_before_the_run_directory_exists(tmp_path, capsys, override, expected):
    """optim.learning_rate=-1 used to pass --dry-run, create the run directory, then fail naming no key."""
    assert_one_line_error(capsys, main(["train", TINY, f"output_dir={tmp_path / 'run'}", override]), expected, "train")
    assert not (tmp_path / "run").exists()


def test_a_missing_config_file_is_named(tmp_path, capsys):
    assert_one_line_error(capsys, main(["train", str(tmp_path / "none.yaml"), "--dry-run"]), "config file not found", "train")


# ----------------------------------------------------------------------------- λ

LAMBDA_OVERRIDE_CASES = [
    (["lambdas.sampler=fixed"], "lambdas.sampler 'fixed' needs lambdas.weights"),
    (["lambdas.sampler=fixed", "lambdas.weights=[0.5,0.5]"], "lambdas.weights must have 4 components"),
    (["lambdas.sampler=fixed", "lambdas.weights=[0.5,0.6,0,0]"], "lambdas.weights sums to 1.1"),
    (["lambdas.sampler=fixed", "lambdas.weights=[1.5,-0.5,0,0]"], "lambdas.weights has negative components"),
    (["lambdas.sampler=fixed", "lambdas.weights=[.nan,0,0,1]"], "lambdas.weights"),
    (["lambdas.sampler=vertices", "lambdas.vertex=7"], "lambdas.vertex must be in [0, 3]"),
    (["lambdas.sampler=vertices", "lambdas.vertex=-1"], "lambdas.vertex must be ≥ 0"),
    (["lambdas.sampler=scheduled"], "lambdas.sampler 'scheduled' needs lambdas.schedule"),
    (["lambdas.sampler=dirichlet", "lambdas.dirichlet_alpha=0"], "lambdas.dirichlet_alpha must be > 0"),
    (["lambdas.anchor_share=1"], "lambdas.anchor_share must be in [0, 1)"),
    (["eval.weights=[1,1,1,1]"], "eval.weights sums to 4"),
    (["eval.weights=[1]"], "eval.weights must have 4 components"),
]


@pytest.mark.parametrize("overrides, expected", LAMBDA_OVERRIDE_CASES, ids=[" ".join(case[0]) for case in LAMBDA_OVERRIDE_CASES])
def test_bad_lambdas_in_a_train_config_are_refused(capsys, overrides, expected):
    assert_one_line_error(capsys, main(["train", TINY, *overrides, "--dry-run"]), expected, "train")


@pytest.mark.parametrize(
    "override, expected",
    [
        ("searcher.initial_points=[[0.5,0.6,0,0]]", "searcher.initial_points[0] sums to 1.1"),
        ("searcher.initial_points=[[1,0,0]]", "searcher.initial_points[0] must have 4 components"),
        ("lambda_concentration=0", "lambda_concentration must be > 0"),
        ("lambda_scheduler.temperature=-1", "temperature must be ≥ 0"),
        ("lambda_scheduler.degree=0", "degree must be ≥ 1"),
    ],
)
def test_bad_lambdas_and_scheduler_settings_in_a_sweep_config_are_refused(capsys, override, expected):
    assert_one_line_error(capsys, main(["sweep", TINY_SWEEP, override, "--dry-run"]), expected, "sweep")


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A checkpoint directory as training leaves it (its config names the tiny model)."""
    path = tmp_path / "run" / "checkpoints" / "step-3"
    path.mkdir(parents=True)
    (path / "training_state.pt").write_bytes(b"")
    shutil.copy(TINY, path / "config.yaml")
    return path


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "--lambda must be comma-separated numbers, got ''"),  # used to mean the centroid, silently
        ("a,b,c,d", "--lambda must be comma-separated numbers"),
        ("0.5,0.5", "--lambda must have 4 components"),
        ("0.5,0.6,0,0", "--lambda sums to 1.1"),
        ("1.5,-0.5,0,0", "--lambda has negative components"),
        ("nan,0,0,1", "--lambda has non-finite components"),
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "generate"])
def test_bad_lambda_flags_are_refused_before_the_model_loads(checkpoint, capsys, command, text, expected):
    argv = ["evaluate", str(checkpoint), f"--lambda={text}"] if command == "evaluate" else ["generate", str(checkpoint), "Hi.", f"--lambda={text}"]
    assert_one_line_error(capsys, main(argv), expected, command)
    assert sorted(p.name for p in checkpoint.iterdir()) == ["config.yaml", "training_state.pt"]


# ----------------------------------------------------------------------------- schedule files


def schedule(**changes) -> dict:
    payload = json.loads(SCHEDULE.read_text())
    payload.update(changes)
    return payload


def without(key: str) -> dict:
    payload = schedule()
    payload.pop(key)
    return payload


SCHEDULE_CASES = [
    ("not-json", "{not json", "not valid JSON"),
    ("a-list", [1, 2], "not a lambda-dpo schedule (a JSON list"),
    ("other-format", {"format": "other"}, "not a lambda-dpo schedule (format is 'other'"),
    ("no-format", {"a": 1}, "format is None"),
    ("future-version", schedule(version=99), "schedule version 99 is not supported"),
    ("no-candidates", without("candidates"), "missing key 'candidates'"),
    ("no-probabilities", without("probabilities"), "missing key 'probabilities'"),
    ("no-dimensions", without("dimensions"), "missing key 'dimensions'"),
    ("no-model", without("model"), "needs the key 'model'"),
    ("no-observations", without("observations"), "needs the key 'observations'"),
    ("no-scheduler-settings", without("lambda_scheduler"), "needs the key 'lambda_scheduler'"),
    ("unknown-setting", schedule(lambda_scheduler={**schedule()["lambda_scheduler"], "speed": 3}), "settings or model are malformed"),
    ("dimensions-not-names", schedule(dimensions=3), "dimensions must be a list of names"),
    ("candidates-ragged", schedule(candidates=[[1, 0], [0.5]]), "candidates must be a list of λ"),
    ("candidates-strings", schedule(candidates="many"), "candidates"),
    ("candidate-off-simplex", schedule(candidates=[[0.5, 0.6, 0, 0]] + schedule()["candidates"][1:]), "candidates[0] sums to 1.1"),
    ("too-few-probabilities", schedule(probabilities=[1.0]), "probabilities"),
    ("probabilities-not-summing-to-one", schedule(probabilities=[0.9] * len(schedule()["candidates"])), "probabilities sums to"),
    ("negative-probabilities", schedule(probabilities=[-1.0] + [2.0 / (len(schedule()["candidates"]) - 1)] * (len(schedule()["candidates"]) - 1)), "probabilities has negative components: [0]=-1"),
]


@pytest.mark.parametrize("payload, expected", [case[1:] for case in SCHEDULE_CASES], ids=[case[0] for case in SCHEDULE_CASES])
def test_bad_schedule_files_get_one_line_errors(tmp_path, capsys, payload, expected):
    path = tmp_path / "schedule.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    assert_one_line_error(capsys, main(["schedule", "show", str(path)]), expected, "schedule")


@pytest.mark.parametrize("payload, expected", [case[1:] for case in SCHEDULE_CASES[:8]], ids=[case[0] for case in SCHEDULE_CASES[:8]])
def test_a_bad_schedule_named_by_a_train_config_is_refused(tmp_path, capsys, payload, expected):
    path = tmp_path / "schedule.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    assert_one_line_error(capsys, main(["train", TINY, "lambdas.sampler=scheduled", f"lambdas.schedule={path}", "--dry-run"]), expected, "train")


def test_a_schedule_error_about_thousands_of_entries_stays_short(tmp_path, capsys):
    """A probability error used to print all 2,000 values (46 KB)."""
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(schedule(probabilities=[0.9] * len(schedule()["candidates"]))))
    assert main(["schedule", "show", str(path)]) == 2
    assert len(capsys.readouterr().err) < 400


OBSERVATION_CASES = [
    ("empty-csv", "", "not a readable CSV table"),
    ("no-score-column", "helpfulness,honesty\n1,0\n0,1\n", "no score column 'objective'"),
    ("one-lambda-column", "helpfulness,objective\n1,0.4\n", "need at least two λ columns"),
    ("text-lambda", "helpfulness,honesty,objective\nhigh,0,0.4\n0,1,0.5\n", "column 'helpfulness' is not numeric"),
    ("lambda-off-simplex", "helpfulness,honesty,objective\n0.5,0.6,0.4\n0,1,0.5\n", "sums to 1.1"),
    ("non-utf8", b"helpfulness,honesty,objective\n\xff,0,0.4\n", "not a readable CSV table"),
]


@pytest.mark.parametrize("content, expected", [case[1:] for case in OBSERVATION_CASES], ids=[case[0] for case in OBSERVATION_CASES])
def test_bad_observation_tables_get_one_line_errors(tmp_path, capsys, content, expected):
    path = write_data(tmp_path / "observations.csv", content)
    assert_one_line_error(capsys, main(["schedule", "fit", "--observations", str(path), "--out", str(tmp_path / "s.json")]), expected, "schedule")
    assert not (tmp_path / "s.json").exists()


# ----------------------------------------------------------------------------- checkpoints


def test_paths_that_are_not_checkpoints_are_refused_before_anything_is_written(tmp_path, checkpoint, capsys):
    run_dir = checkpoint.parent.parent
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    cases = [
        (["evaluate", str(run_dir)], f"it is a run directory: pass one of its checkpoints, e.g. {checkpoint}"),
        (["evaluate", str(tmp_path / "nowhere")], "is not a checkpoint directory"),
        (["evaluate", str(checkpoint / "config.yaml")], "is not a checkpoint directory"),
        (["evaluate", str(run_dir), "--generate"], "it is a run directory"),
        (["generate", str(run_dir), "Hi."], "it is a run directory"),
        (["benchmark", str(run_dir)], "it is a run directory"),
    ]
    for argv, expected in cases:
        assert_one_line_error(capsys, main(argv), expected, argv[0])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before


def test_resume_of_a_directory_without_a_config_is_a_one_line_error(tmp_path, capsys):
    assert_one_line_error(capsys, main(["train", "--resume", str(tmp_path)]), "config file not found", "train")


def test_there_are_over_a_hundred_bad_inputs_here():
    counted = (len(DATA_CASES) + 2 + 3 + len(CONFIG_FILE_CASES) + 6 + len(OVERRIDE_CASES) + 1 + len(LAMBDA_OVERRIDE_CASES) + 5 + 12
               + len(SCHEDULE_CASES) + 8 + 1 + len(OBSERVATION_CASES) + 6 + 1)
    assert counted >= 100
