# One entry point for people and CI. Every target installs what it needs first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install-stamp
# Tests and benchmarks never reach for W&B servers.
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-fast lint format bench clean

install: $(STAMP)  ## create .venv and install fastast-pl editable with dev extras (fast when done)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: install  ## teacher -> distilled ToMe student on built-in synthetic audio, on the CPU
	$(BIN)/python -m fastast_pl demo

test: install  ## the whole test suite (about 10 minutes on 2 CPU cores at most)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: install
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

bench: install  ## model and data-loading benchmarks; results go to bench/ (see docs/benchmarks.md)
	$(BIN)/python -m fastast_pl benchmark
	$(BIN)/python -m fastast_pl bench-data

clean:
	rm -rf bench .pytest_cache .ruff_cache
