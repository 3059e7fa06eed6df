# rcnnexp: `make train` and `make test` set everything up on a fresh clone.
# `make test-gpu PYTHON=python3`: with an interpreter whose torch is already there (a GPU
# machine's image), every target runs with it, rcnnexp from this folder (PYTHONPATH), and no
# venv is built: its pinned torch would be a multi-GB download, or none without a registry.
SHELL := /bin/bash
VENV ?= .venv
STAMP := $(VENV)/.installed
PYTHON ?=
ifeq ($(PYTHON),)
PY := $(VENV)/bin/python
SETUP := $(STAMP)
else
PY := $(PYTHON)
SETUP :=
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
endif
# PyTorch is installed first and pinned: on the project's build machines these wheels lie
# on disk (pip finds them; a different version would be a multi-GB download).
TORCH ?= torch==2.14.1 torchvision==0.29.1
ARGS ?=
PYTEST ?= $(PY) -m pytest

.PHONY: install train test test-slow test-gpu test-all lint clean-venv

install: $(SETUP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

## the main job: RCNN on the embedded digits, offline, on CPU (ARGS="..." adds overrides)
train: $(SETUP)
	$(PY) -m rcnnexp train $(ARGS)

## the test suite that CI runs (under 10 minutes on 2 cores)
test: $(SETUP)
	$(PYTEST) -q -m "not slow and not gpu" -n auto --dist loadfile

## longer tests: the full default run, real MNIST (../shared/data), benchmarks
test-slow: $(SETUP)
	$(PYTEST) -q -m "slow"

## tests that need CUDA (skipped without it)
test-gpu: $(SETUP)
	$(PYTEST) -q -m "gpu"

test-all: $(SETUP)
	$(PYTEST) -q

lint: $(SETUP)
	$(PY) -m ruff check rcnnexp hydra_plugins tests scripts

clean-venv:
	rm -rf $(VENV)
