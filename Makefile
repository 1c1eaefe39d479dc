# Habitué — the two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DB ?= sqlite:///habitue-demo.db

.PHONY: demo test venv system-deps lint typecheck test-sqlite test-postgres bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	HABITUE_DATABASE_URL=$${HABITUE_DATABASE_URL:-$(DEMO_DB)} $(BIN)/habitue demo

system-deps:
	scripts/install-system-deps

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

typecheck: lint

# Two test processes (the machine's two cores), each with a database of its own.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -q --durations=15 -n $(PYTEST_WORKERS) --dist worksteal

test-sqlite: venv
	$(PYTEST) --db sqlite

test-postgres: venv
	scripts/ensure-postgres
	$(PYTEST) --db postgres

test: venv system-deps lint test-sqlite test-postgres

bench: venv
	$(BIN)/python bench/earn.py
	$(BIN)/python bench/import.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache habitue-demo.db*
