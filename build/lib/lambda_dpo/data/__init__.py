"""Listwise preference data: records → examples → token ids → batches."""

from lambda_dpo.data.collate import IGNORE_INDEX, ListwiseCollator
from lambda_dpo.data.encoding import EncodedExample, encode_examples, render_prompt
from lambda_dpo.data.loading import DataConfig, LoadReport, load_examples
from lambda_dpo.data.records import (
    DEFAULT_DIMENSIONS,
    BadRecordError,
    ListwiseExample,
    parse_listwise,
    parse_ultrafeedback,
)

__all__ = [
    "DEFAULT_DIMENSIONS",
    "IGNORE_INDEX",
    "BadRecordError",
    "DataConfig",
    "EncodedExample",
    "ListwiseCollator",
    "ListwiseExample",
    "LoadReport",
    "encode_examples",
    "load_examples",
    "parse_listwise",
    "parse_ultrafeedback",
    "render_prompt",
]
