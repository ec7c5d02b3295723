# The two set-up commands are `make run` and `make test`; everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "checkin needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)  ## the demo: SQLite, console SMS, web + scheduler on http://127.0.0.1:5000
	$(BIN)/checkin demo

test: $(STAMP)  ## the whole suite, SQLite always and PostgreSQL when reachable
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## skip the tests that start real processes
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check checkin migrations tests
	$(BIN)/ruff format --check checkin migrations tests
	$(BIN)/mypy

bench: $(STAMP)  ## writes docs/benchmarks.md; needs the PostgreSQL that the tests use
	$(BIN)/python -m bench.trends
	$(BIN)/python -m bench.dispatch --patients 100000
	$(BIN)/python -m bench.dashboard --patients 10000 --requests 50
	$(BIN)/python -m bench.inbound --patients 5000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
