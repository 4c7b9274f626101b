#!/bin/sh
# The wheels a lent GPU machine's image lacks for benchmarks/gpu_check.py, at the versions the suite
# passed with (constraints/tested.txt), for its Python 3.12; they travel in `carry` as .whl
# (benchmarks/README.md, "The device check"). Run from the repository root, where pip reaches PyPI.
set -eu
NAMES="trl datasets omegaconf dill multiprocess transformers huggingface_hub tokenizers peft accelerate"
grep -qs '^/.whl/$' .git/info/exclude || echo /.whl/ >> .git/info/exclude
mkdir -p .whl
for name in $NAMES; do
    pinned=$(grep -i -E "^${name}==" constraints/tested.txt || true)
    [ -n "$pinned" ] || { echo "$name is not pinned in constraints/tested.txt" >&2; exit 1; }
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
        -d .whl "$pinned"
done
du -sh .whl
