# Two targets matter to a newcomer: `make start` and `make test`.  Both build the
# virtualenv on first use, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make start CONFIG=my.yaml LISTEN=127.0.0.1:9090`: another config, another address.
CONFIG ?= config.example.yaml
LISTEN ?=

.PHONY: start test lint unit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Start the daemon on $(CONFIG) (Ctrl-C drains and stops it).
start: $(STAMP)
	$(BIN)/chamberlain start --config $(CONFIG)$(if $(LISTEN), --listen $(LISTEN))

## Lint, type-check, check the layering, then the whole test suite.
test: lint unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
