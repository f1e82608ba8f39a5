# Drape: every entry point. `make demo` and `make test` do all set-up themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.drape-setup
PROTOS := $(shell find proto/drape -name '*.proto' | sort)
PYTEST_ARGS ?=

.PHONY: help setup demo demo-experiment test proto serve bench fuzz lint lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install the locked dependency set (idempotent)

# Re-runs only when the lock or the package metadata changed; otherwise `make setup` is a no-op.
# --no-deps: the lock is complete and exact, and no resolver may pull the CUDA torch build or
# mediapipe's numpy<2 / opencv-contrib declarations (see requirements.lock).
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --no-deps -r requirements.lock 2> >(grep -v 'is ignored' >&2)
	$(PIP) install --no-deps --no-build-isolation -e . 2> >(grep -v 'is ignored' >&2)
	$(BIN)/python -c "import mediapipe, torch, cv2, grpc, av" 2>/dev/null
	@touch $@
	@echo "setup: $(VENV) is ready"

demo: setup  ## run the main job on the embedded default; results in out/
	$(BIN)/drape demo --out out

demo-experiment: setup  ## simulate a storefront A/B experiment; report and plot in out/experiment/
	$(BIN)/drape experiments demo --out out/experiment

test: setup  ## run the whole test suite (starts its own Kafka broker and gRPC servers)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

proto: setup  ## regenerate the Python code from proto/ (committed; a test checks it is current)
	$(BIN)/python -m services.common.protogen

serve: setup  ## start the local stack: Kafka broker + every service, until Ctrl-C
	$(BIN)/drape stack

bench: setup  ## run the benchmarks; JSON lands in out/bench/
	$(BIN)/python benchmarks/run_all.py --out out/bench

# Not part of `make test`: each target runs FUZZ_SECONDS (default 10 min), one after another.
FUZZ_SECONDS ?= 600
fuzz: setup  ## coverage-guided fuzzing (atheris) of decoding and request parsing; out/bench/fuzz.json
	nice -n 15 $(BIN)/python benchmarks/fuzz/run.py --seconds $(FUZZ_SECONDS) --out out/bench

lint: setup  ## static checks
	$(BIN)/ruff check services tests benchmarks
	$(BIN)/ruff format --check services tests benchmarks

lock:  ## re-resolve requirements.lock from pyproject.toml in a scratch venv (review the diff!)
	$(PYTHON) services/common/lockgen.py

clean:  ## remove the virtual environment and outputs
	rm -rf $(VENV) out .pytest_cache
