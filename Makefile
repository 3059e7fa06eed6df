# rcnnexp: `make train` and `make test` set everything up on a fresh clone.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# PyTorch is installed first and pinned: on the project's build machines these wheels lie
# on disk (pip finds them; a different version would be a multi-GB download).
TORCH ?= torch==2.14.1 torchvision==0.29.1
ARGS ?=
PYTEST ?= $(PY) -m pytest

.PHONY: install train test test-slow test-gpu test-all lint clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

## the main job: RCNN on the embedded digits, offline, on CPU (ARGS="..." adds overrides)
train: $(STAMP)
	$(VENV)/bin/rcnnexp train $(ARGS)

## the test suite that CI runs (under 10 minutes on 2 cores)
test: $(STAMP)
	$(PYTEST) -q -m "not slow and not gpu" -n auto --dist loadfile

## longer tests: the full default run, real MNIST (../shared/data), benchmarks
test-slow: $(STAMP)
	$(PYTEST) -q -m "slow"

## tests that need CUDA (skipped without it)
test-gpu: $(STAMP)
	$(PYTEST) -q -m "gpu"

test-all: $(STAMP)
	$(PYTEST) -q

lint: $(STAMP)
	$(VENV)/bin/ruff check rcnnexp tests scripts

clean-venv:
	rm -rf $(VENV)
