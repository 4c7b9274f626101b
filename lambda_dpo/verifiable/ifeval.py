"""IFEval's instruction checkers, as lm-eval ships them (``lm_eval.tasks.ifeval``), imported offline."""

from __future__ import annotations

import contextlib
import functools
import io
import logging


@functools.cache
def _registry():
    """lm-eval's IFEval registry, imported without its attempt to download nltk data.

    Its module downloads nltk's punkt tables on import when they are missing; this machine (and any
    offline cluster) cannot, and none of the checkers used here needs them.
    """
    import langdetect
    import nltk

    langdetect.DetectorFactory.seed = 0  # langdetect is random unless seeded; ratings must be reproducible
    download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from lm_eval.tasks.ifeval import instructions_registry
    finally:
        nltk.download = download
    # A checker logs an error for every text whose language it cannot detect (and counts it as
    # followed, which is IFEval's rule); that is not our user's error to read.
    logging.getLogger("lm_eval.tasks.ifeval.instructions").setLevel(logging.CRITICAL)
    return instructions_registry.INSTRUCTION_DICT


def ifeval_checker(instruction):
    """The IFEval checker of ``instruction``, built with its arguments (ready to check)."""
    registry = _registry()
    if instruction.id not in registry:
        raise ValueError(f"unknown IFEval instruction {instruction.id!r}")
    checker = registry[instruction.id](instruction.id)
    checker.build_description(**instruction.kwargs)
    return checker
