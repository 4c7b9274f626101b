"""Loading listwise examples from the hub or local JSON/JSONL/Parquet files through `datasets`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence

from lambda_dpo.config import AT_LEAST_ONE, POSITIVE, check_settings, setting
from lambda_dpo.data.synthetic import parse_synthetic_source, synthetic_records
from lambda_dpo.data.packing import PACKINGS, LayoutSettings
from lambda_dpo.data.records import DEFAULT_DIMENSIONS, PARSERS, BadRecordError, ListwiseExample, check_rating_scale, detect_format

LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
ON_BAD_RECORD = ("raise", "skip")
FORMATS = ("auto", "ultrafeedback", "listwise")


@dataclass
class LoadReport:
    """What a load read, kept and skipped (with the reason for each skipped record)."""

    source: str
    format: str
    num_records: int = 0
    skipped: list[BadRecordError] = field(default_factory=list)

    @property
    def num_loaded(self) -> int:
        return self.num_records - len(self.skipped)

    def summary(self, *, show: int = 5) -> str:
        lines = [f"{self.source} ({self.format}): {self.num_loaded} of {self.num_records} records loaded, {len(self.skipped)} skipped"]
        lines += [f"  skipped {error}" for error in self.skipped[:show]]
        if len(self.skipped) > show:
            lines.append(f"  ... and {len(self.skipped) - show} more")
        return "\n".join(lines)


def local_files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in LOCAL_BUILDERS)
        if not files:
            raise FileNotFoundError(f"{source}: no .json, .jsonl or .parquet files in this directory")
        return files
    if path.exists():
        if path.suffix not in LOCAL_BUILDERS:
            raise ValueError(f"{source}: unsupported file type {path.suffix!r}; use .json, .jsonl or .parquet")
        return [path]
    if path.suffix in LOCAL_BUILDERS or source.startswith((".", "/")):
        raise FileNotFoundError(f"data file not found: {source}")
    return []


def _read_json_lines(path: Path) -> list:
    """The records of a JSON-lines file, one per non-blank line; a line that is not UTF-8 or not
    JSON becomes a BadRecordError in its place (raised or skipped by ``on_bad_record``)."""
    raw = path.read_bytes()
    if path.suffix == ".json" and raw.lstrip().startswith(b"["):
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a valid JSON array of records ({error})") from None
    records = []
    for line_number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{line_number}"
        try:
            records.append(json.loads(line.decode("utf-8")))
        except UnicodeDecodeError as error:
            records.append(BadRecordError(where, "(line)", f"is not UTF-8 text (byte {line[error.start]:#04x} at column {error.start + 1})"))
        except json.JSONDecodeError as error:
            records.append(BadRecordError(where, "(line)", f"is not valid JSON ({error})"))
    return records


def _is_utf8(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            for _ in iter(lambda: handle.read(1 << 24), ""):
                pass
    except UnicodeDecodeError:
        return False
    return True


def _holds_no_records(path: Path) -> bool:
    if path.suffix == ".parquet":
        return path.stat().st_size == 0
    with open(path, "rb") as handle:
        return not any(line.strip() for line in handle)


def _records_of_file(path: Path) -> Iterable[dict]:
    from datasets import load_dataset
    from datasets.exceptions import DatasetGenerationError

    if _holds_no_records(path):
        raise ValueError(f"{path}: the file is empty; it holds no records")
    if LOCAL_BUILDERS[path.suffix] == "json" and not _is_utf8(path):
        return _read_json_lines(path)  # Arrow would fail midway; line by line names the bad line
    datasets_logger = logging.getLogger("datasets")
    level = datasets_logger.level
    datasets_logger.setLevel(logging.CRITICAL)  # its "Failed to load JSON" traceback: we name the bad line below
    try:
        return load_dataset(LOCAL_BUILDERS[path.suffix], data_files=str(path), split="train")
    except DatasetGenerationError as error:
        if LOCAL_BUILDERS[path.suffix] != "json":
            cause = error.__cause__ or error
            raise ValueError(f"{path}: not a readable {path.suffix[1:]} file ({str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__})") from None
        # Arrow needs one schema per file; a file whose records disagree in type (exactly the bad
        # records we want to name) is read line by line so the parser can say which one is wrong.
        return _read_json_lines(path)
    finally:
        datasets_logger.setLevel(level)


def iter_raw_records(source: str, *, split: str = "train") -> Iterator[tuple[str, dict, Sequence[str]]]:
    """``(record_id, record, column_names)`` for every record of a hub dataset, local files or
    the synthetic generator (``synthetic:N[:seed=S]``)."""
    synthetic = parse_synthetic_source(source)
    if synthetic:
        num_prompts, seed = synthetic
        for index, record in enumerate(synthetic_records(num_prompts, seed=seed)):
            yield f"{source}[{index}]", record, list(record)
        return
    files = local_files(source)
    if files:
        for path in files:
            records = _records_of_file(path)
            columns = list(records.column_names) if hasattr(records, "column_names") else sorted({k for r in records if isinstance(r, dict) for k in r})
            for index, record in enumerate(records):
                yield f"{path.name}[{index}]", record, columns
        return
    from datasets import load_dataset

    dataset = load_dataset(source, split=split)
    for index, record in enumerate(dataset):
        yield f"{source}[{split}][{index}]", record, dataset.column_names


def load_examples(
    source: str,
    *,
    dimensions: Sequence[str],
    format: str = "auto",
    split: str = "train",
    on_bad_record: str = "raise",
    limit: int | None = None,
    rating_scale: Sequence[float] | None = None,
) -> tuple[list[ListwiseExample], LoadReport]:
    """Read, validate and convert records into listwise examples.

    source: a hub dataset name (e.g. ``openbmb/UltraFeedback``), a local .json/.jsonl/.parquet
        file, a directory of them, or ``synthetic:N[:seed=S]`` (the embedded generator).
    format: ``ultrafeedback``, ``listwise`` or ``auto`` (from the column names).
    on_bad_record: ``raise`` stops at the first bad record with a message naming it and the
        field; ``skip`` leaves it out and counts it in the report.
    limit: keep at most this many good examples.
    rating_scale: ``[low, high]`` every rating must lie in (default: UltraFeedback's 1–5 for that
        format, any finite number for listwise data).
    """
    if on_bad_record not in ON_BAD_RECORD:
        raise ValueError(f"on_bad_record must be one of {ON_BAD_RECORD}, got {on_bad_record!r}")
    if format not in FORMATS:
        raise ValueError(f"data format must be one of {FORMATS}, got {format!r}")
    check_rating_scale(rating_scale, name="rating_scale")
    examples: list[ListwiseExample] = []
    report = LoadReport(source=source, format=format)
    for record_id, record, columns in iter_raw_records(source, split=split):
        if report.format == "auto":
            report.format = detect_format(columns)
        report.num_records += 1
        try:
            if isinstance(record, BadRecordError):  # a line that could not be read as a record
                raise record
            examples.append(PARSERS[report.format](record, key=len(examples), record_id=record_id, dimensions=dimensions, scale=rating_scale))
        except BadRecordError as error:
            if on_bad_record == "raise":
                raise
            report.skipped.append(error)
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        first = f"; the first: {report.skipped[0]}" if report.skipped else ""
        raise ValueError(f"{source}: no usable records: {report.num_records} read, {len(report.skipped)} skipped{first}")
    return examples, report


@dataclass
class DataConfig:
    """Where the preference data comes from and how it is turned into batches."""

    source: str = setting("openbmb/UltraFeedback", path=True, help='hub dataset name, or a local .json/.jsonl/.parquet file or directory')
    format: str = setting("auto", help='auto | ultrafeedback | listwise', choices=FORMATS)
    split: str = setting("train", help='hub split')
    dimensions: List[str] = setting(default_factory=lambda: list(DEFAULT_DIMENSIONS), help="rating dimensions, in the order of λ's components")
    on_bad_record: str = setting("raise", help='raise | skip', choices=ON_BAD_RECORD)
    limit: Optional[int] = setting(None, within=AT_LEAST_ONE, help='keep at most this many examples')
    target_temperature: float = setting(1.0, within=POSITIVE, help='T of the per-dimension targets softmax(rating / T)')
    max_prompt_length: int = setting(256, within=AT_LEAST_ONE, help="tokens of a templated prompt; a longer one loses the start of its text, never the template's own tokens")
    max_length: int = setting(512, within=AT_LEAST_ONE, help='tokens of prompt + response; a longer response loses its end')
    packing: str = setting("shared_prefix", choices=PACKINGS, help="none: B·N rows of prompt + response, padded | shared_prefix: each prompt once followed by its responses, several prompts per row (docs/method.md)")
    max_tokens_per_row: int = setting(1024, within=AT_LEAST_ONE, help="shared_prefix: tokens per packed row (a prompt with its responses longer than this gets a row of its own)")
    rating_scale: Optional[List[float]] = setting(None, help="[low, high] every rating must lie in; None = the format's own (UltraFeedback: [1, 5]; listwise: any finite number)")

    def __post_init__(self) -> None:
        check_settings(self, "data")
        if not self.dimensions or len(set(self.dimensions)) != len(self.dimensions):
            raise ValueError(f"data.dimensions must be distinct names, got {list(self.dimensions)}")
        check_rating_scale(self.rating_scale)
        if self.max_length <= self.max_prompt_length:
            raise ValueError(f"data.max_length ({self.max_length}) must exceed data.max_prompt_length ({self.max_prompt_length})")

    def layout(self, pad_token_id: int) -> LayoutSettings:
        """How batches of this data are laid out for the forward pass."""
        return LayoutSettings(self.packing, self.max_tokens_per_row, pad_token_id)
