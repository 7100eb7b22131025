# HiPO — the two set-up commands are `make demo` and `make test` (each creates or reuses .venv and installs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hipo-installed
# torch: a CPU build where there is no GPU (no multi-GB CUDA download). A local CPU wheel (pip find-links) wins;
# elsewhere, without nvidia-smi, the PyTorch CPU index is added.
TORCH := torch==2.13.0
TORCH_INDEX := $(shell command -v nvidia-smi >/dev/null 2>&1 || ls /opt/wheels/torch-2.13.0+cpu* >/dev/null 2>&1 || echo --extra-index-url https://download.pytorch.org/whl/cpu)
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint format perf bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_INDEX) $(TORCH)
	$(PY) -m pip install -q -e ".[dev,compare]"
	$(PY) -c "from hipo.models.embedded import ensure_converted; print('embedded model:', ensure_converted())"
	touch $(STAMP)

install: $(STAMP)

## Train HiPO on the embedded default (SmolLM2-135M, synthetic data, CPU) and print the held-out table + MLflow run.
demo: $(STAMP)
	$(VENV)/bin/hipo train experiment=demo

## The whole test suite (unit, property, integration, slow real-model tests; GPU tests skip without CUDA).
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

## Unit and property tests on the tiny model, every module of src/hipo: ~45 s on 2 CPU cores (measured 40 s and 44 s,
## 2026-12-02; ~20 s of it is collection importing torch/Lightning/MLflow). Skips tests marked slow (model or
## training runs, subprocesses, MLflow stores, waits, most config compositions); `make test` runs them too.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

## ruff check + ruff format --check (src, tests) + mypy (all of src/hipo); CI runs it before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests && $(VENV)/bin/ruff format --check src tests && $(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format src tests && $(VENV)/bin/ruff check --fix src tests

## Step time / useful tokens/s / peak memory of training variants (`hipo perf`, default: tiny shape, smoke suite).
perf: $(STAMP)
	$(VENV)/bin/hipo perf

## Old name of `make perf` (kept for one release).
bench:
	@echo "make bench is deprecated: use make perf" >&2
	@$(MAKE) --no-print-directory perf

clean-venv:
	rm -rf $(VENV)
