# Set-up and entry points for a fresh clone. Every pip call goes through the CPU constraint so
# that pip never pulls a CUDA build of torch on a machine without a GPU.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS ?= constraints/cpu.txt

.PHONY: setup demo test test-unit clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $@

# The main job. Until the Ray λ sweep lands (issue #5), this runs what exists end to end: a λ-DPO
# fine-tune of the embedded tiny default (resumed, not repeated, when runs/demo/train exists),
# then the λ scheduler on the paper's five observations.
DEMO_RUN := runs/demo/train
demo: setup
	if [ -d $(DEMO_RUN)/checkpoints ]; then $(VENV)/bin/lambda-dpo train --resume $(DEMO_RUN); \
	else $(VENV)/bin/lambda-dpo train configs/train/tiny.yaml output_dir=$(DEMO_RUN); fi
	$(VENV)/bin/lambda-dpo schedule fit --observations search/examples/paper_five_points.csv \
		--regression lstsq --temperature-scale std --temperature 3 --out runs/demo/schedule.json
	$(VENV)/bin/lambda-dpo schedule plot runs/demo/schedule.json --out runs/demo/schedule.png

test: setup
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest -m "not integration"

clean:
	rm -rf $(VENV) runs
