# Everything a fresh machine needs: `make demo` (the TUI on the demo recipe) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is chosen here, not in pyproject.toml (which keeps a range): with an NVIDIA driver take
# the usual (CUDA) build, without one the CPU build. CI sets TORCH=torch==2.13.0.
TORCH ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.2,torch==2.13.0)

.PHONY: install demo demo-sweep test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py supervisor/reading/_lines.c Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[train,dev,fast,report]'
	touch $@

# Recipes say `python`: put the venv first on PATH so runs find torch without an activated venv.
RUN := PATH="$(CURDIR)/$(BIN):$$PATH"

demo: install
	$(RUN) $(BIN)/ftmon recipes/demo-unstable.yaml

# A 2x2 sweep of the tiny model live in the TUI (c compares the members; headless:
# ftmon sweep recipes/demo-sweep.yaml).
demo-sweep: install
	$(RUN) $(BIN)/ftmon recipes/demo-sweep.yaml

test: install
	$(RUN) $(BIN)/python -m pytest

# The unit tier: pure code, no processes, no torch, no TUI (under 30 s). Tests marked slow
# (a 200k-line log compared both ways) run in `make test` only.
test-fast: install
	$(RUN) $(BIN)/python -m pytest tests/unit -q -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check supervisor tui trainer bench
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/scan.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/tui.py
	$(RUN) $(BIN)/python bench/trainer.py
	$(RUN) $(BIN)/python bench/estimate.py --quick
	$(RUN) $(BIN)/python bench/sweep.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
