# The two commands of the README: `make demo` and `make test`. Both create .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU machines pin the local CPU wheel first so no CUDA build is pulled; GPU users: make TORCH=torch
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
LLM_STAMP := $(VENV)/.installed-llm

.PHONY: demo test test-slow test-all install install-dev install-llm lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e . "$(TORCH)"
	touch $@

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install -q -e ".[dev]" "$(TORCH)"
	touch $@

# llama-cpp-python compiles from source (~6 min on 2 cores; the wheel is cached afterwards);
# ray[data] is for the slow engine="ray" tests (tests/tools/test_engine_ray.py)
$(LLM_STAMP): $(DEV_STAMP)
	$(BIN)/pip install -q -e ".[dev,local-llm,ray]" "$(TORCH)"
	touch $@

install: $(STAMP)
install-dev: $(DEV_STAMP)
install-llm: $(LLM_STAMP)

# At a terminal the demo ends in the chat (http://127.0.0.1:7860) with the proposal waiting in its
# Review tab; without one (scripts, CI) it stops at the pending proposal and prints the review commands.
demo: $(STAMP)
	@if [ -t 0 ] && [ -z "$$CI" ]; then chat=--chat; else chat=; fi; $(BIN)/curate demo $$chat $(DEMO_ARGS)

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "not slow and not gpu" -q

test-slow: $(LLM_STAMP)
	$(BIN)/python -m pytest -m "slow and not gpu" -q

test-all: $(LLM_STAMP)
	$(BIN)/python -m pytest -q

lint: $(DEV_STAMP)
	$(BIN)/ruff check agent tools policies ui tests bench

bench: $(DEV_STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .curate demo
