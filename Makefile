# Every target works on a fresh clone: `install` creates .venv in the repo root.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench services clean

install: $(STAMP)

# torch first, pinned to the CPU wheel on local disk; the project's range then installs nothing more.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,postgres]'
	touch $(STAMP)

# Builds data/demo.db from the shipped demo run when missing, then serves it on :8765.
demo: install
	$(VENV)/bin/locattr demo

# Starts the PostgreSQL server the storage tests run against (installs it if needed).
services:
	.ci/services

test: install services
	. .ci/test-env && $(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not postgres and not slow"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks alembic
	$(VENV)/bin/ruff format --check src tests benchmarks alembic
	$(VENV)/bin/pyright

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
