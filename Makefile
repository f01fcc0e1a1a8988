# One entry point for people and CI. Every target installs what it needs first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install-stamp
# Every installed package, direct and transitive, with hashes: CPython 3.11 on x86-64 Linux.
LOCK   := requirements.lock
# Tests and benchmarks never reach for W&B servers.
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1

.PHONY: install lock demo test test-fast lint format bench bench-train bench-epoch bench-gpu clean

install: $(STAMP)  ## create .venv, install the lock, then fastast-pl editable (fast when done)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

lock: install  ## re-resolve requirements.lock from pyproject.toml (on purpose: it changes versions)
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --constraint lock-constraints.txt --no-header --output-file $(LOCK)

demo: install  ## AST off the shelf with ToMe, then CMKD recovery (and its labels-only control, with all and a quarter of the labels), with pictures; CPU, ~2 min
	$(BIN)/python -m fastast_pl demo

test: install  ## the whole test suite (about 10 minutes on 2 CPU cores at most)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

test-fast: install  ## the suite without the tests marked slow (end-to-end runs, fresh interpreters): under 90 s on 2 cores
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not slow"

lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

format: install
	$(BIN)/ruff check --fix src tests scripts
	$(BIN)/ruff format src tests scripts

bench: install  ## model and data-loading benchmarks; results go to bench/ (see docs/benchmarks.md)
	$(BIN)/python -m fastast_pl benchmark
	$(BIN)/python -m fastast_pl bench-data

bench-train: install  ## training/distillation steps per schedule, 1 thread, CPU clock (docs/benchmarks.md)
	$(BIN)/python -m fastast_pl benchmark --kind train --threads 1 --clock cpu --batch-sizes 1 \
	  --iters 3 --warmup 1 --no-memory --out bench/train

bench-epoch: install  ## end-to-end test epoch from the feature cache per schedule (docs/benchmarks.md)
	$(BIN)/python -m fastast_pl benchmark --kind epoch --threads 1 --clock cpu --clips 8 \
	  --batch-sizes 4 --iters 2 --warmup 1 --targets 1.5 2 --out bench/epoch

# GPU figures from the source tree, no install: needs only torch, timm, transformers and
# lightning in GPU_PYTHON (rich and matplotlib are optional). Inference, then training
# steps, bf16 autocast at batch 64; JSON + Markdown land in bench/gpu/.
GPU_PYTHON ?= python3
GPU_BENCH := PYTHONPATH=src $(GPU_PYTHON) -m fastast_pl.tools.benchmark --device cuda \
  --dtype bf16 --batch-sizes 64 --warmup 3 --out bench/gpu
bench-gpu:  ## inference + training benchmarks on CUDA, bf16, batch 64 (under 5 minutes)
	$(GPU_BENCH) --kind inference --iters 10
	$(GPU_BENCH) --kind train --iters 5 --no-memory

clean:
	rm -rf bench .pytest_cache .ruff_cache
