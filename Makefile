# Set-up and entry points for a fresh clone. Every pip call goes through the CPU constraint so
# that pip never pulls a CUDA build of torch on a machine without a GPU.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS ?= constraints/cpu.txt
# The versions the suite last passed with (make lock writes it): a fresh machine gets what CI tested.
LOCK ?= constraints/tested.txt

.PHONY: setup demo test test-unit lock clean

setup: $(VENV)/.installed

# The venv with the package and the extras $(1), every version from the lock.
define install
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -c $(LOCK) -e '.[$(1)]'
endef
EVERYTHING := all,dev

# Everything: the tests, lm-eval, the trackers, the real model's GGUF reader.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) $(LOCK)
	$(call install,$(EVERYTHING))
	touch $@ $(VENV)/.installed-sweep

# What the demo needs and no more: the package and its sweep extra (Ray, Optuna).
$(VENV)/.installed-sweep: pyproject.toml $(CONSTRAINTS) $(LOCK)
	$(call install,sweep)
	touch $@

# Refresh the lock from this venv after the suite passes on newer versions (torch stays in $(CONSTRAINTS)).
lock: setup
	$(PY) -m pip freeze --exclude-editable | grep -v -i -E '^(torch|pip|setuptools|wheel|ruff)==' > $(LOCK)

# The main job: the local Ray λ sweep on the embedded tiny default (8 fine-tunes, 2 at a time).
# A second `make demo` continues an interrupted sweep, or reprints a finished one's results.
SWEEP_DIR := runs/sweeps/tiny
demo: $(VENV)/.installed-sweep
	if [ -f $(SWEEP_DIR)/sweep.yaml ]; then $(VENV)/bin/lambda-dpo sweep --resume $(SWEEP_DIR); \
	else $(VENV)/bin/lambda-dpo sweep configs/sweep/tiny.yaml; fi

test: setup
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest -m "not integration and not real_model"

clean:
	rm -rf $(VENV) runs
