# The two commands of the README, and what they need. Idempotent: a second run with
# nothing changed installs nothing and starts at once.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Two workers; a test file stays on one worker (the end-to-end files share a sandbox).
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: run test lint install system-deps node-deps clean

## Install everything and run the retrain checklist on the sandbox profile.
run: $(STAMP)
	$(BIN)/console run --checklist retrain

## Install everything (system packages included), check lint, format and types, and run the whole test suite.
test: $(STAMP) system-deps node-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## ruff (lint and format) and mypy over the packages (settings in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

system-deps:
	@scripts/install-system-deps.sh

## Azurite (the Azure Storage emulator the store tests start), from scripts/node/package-lock.json.
node-deps:
	@scripts/install-node-deps.sh

clean:
	rm -rf $(VENV) build *.egg-info
