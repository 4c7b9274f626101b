"""lm-eval task definitions shipped with lambda-dpo (see ``lambda_dpo.benchmarks``)."""

from pathlib import Path

TASKS_DIR = Path(__file__).parent
