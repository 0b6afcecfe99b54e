# Every target works on a fresh clone: `install` creates .venv in the repo root.
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed
# Where pip looks for torch (e.g. https://download.pytorch.org/whl/cpu on a CPU-only machine).
TORCH_INDEX ?=

FRONTEND := frontend
FRONTEND_DEPS := $(FRONTEND)/node_modules/.installed
FRONTEND_STAMP := $(FRONTEND)/dist/.built
FRONTEND_SOURCES := $(shell find $(FRONTEND)/src -type f) $(FRONTEND)/index.html \
	$(FRONTEND)/vite.config.ts $(FRONTEND)/tsconfig.json

.PHONY: install demo test test-fast lint bench gpu-check services browser frontend frontend-types clean

install: $(STAMP) $(FRONTEND_STAMP)

# What running locattr needs (`make demo` stops here): torch first, pinned to the version the
# tests run against, so the project's range (torch>=2.2) then installs nothing more. From PyPI on
# Linux x86-64 that is the CUDA build: it uses a CUDA GPU as is and runs on a CPU-only machine
# too, after downloading the CUDA libraries (some GB); on such a machine
# `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes the CPU-only build.
$(RUNTIME_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e .
	touch $@

# Everything for tests, lint and benchmarks: the development and PostgreSQL extras.
$(STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install -q -e '.[dev,postgres]'
	touch $@

# The browser frontend: npm packages from the lock file, then the build the API serves at `/`.
$(FRONTEND_DEPS): $(FRONTEND)/package.json $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(FRONTEND_STAMP): $(FRONTEND_DEPS) $(FRONTEND_SOURCES)
	cd $(FRONTEND) && npm run --silent build
	touch $@

frontend: $(FRONTEND_STAMP)

# Regenerate the frontend's API types after an API change (tests/frontend fails until then).
frontend-types: $(STAMP) $(FRONTEND_DEPS)
	$(PY) $(FRONTEND)/scripts/dump_openapi.py $(FRONTEND)/node_modules/.openapi.json
	cd $(FRONTEND) && npx --no-install openapi-typescript node_modules/.openapi.json \
		-o src/api/schema.d.ts

# Builds data/demo.db from the shipped demo run when missing, then serves it on :8765; installs
# only what that needs (no development extras).
demo: $(RUNTIME_STAMP) $(FRONTEND_STAMP)
	$(VENV)/bin/locattr demo

# Starts the PostgreSQL server the storage tests run against (installs it if needed).
services:
	.ci/services

# Installs Debian's Chromium for the browser tests (tests/frontend) if it is missing.
browser:
	.ci/browser

test: install services browser
	. .ci/test-env && $(PY) -m pytest

test-fast: install browser
	$(PY) -m pytest -m "not postgres and not slow"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks alembic tools
	$(VENV)/bin/ruff format --check src tests benchmarks alembic tools
	$(VENV)/bin/pyright
	$(PY) tools/check_layers.py

bench: install browser
	$(PY) -m benchmarks

# On a CUDA machine: the attribution tests on the GPU, then the GPU compute figures. Run it with a
# CUDA build of torch in the environment (PY=python3 make gpu-check with the project on PYTHONPATH).
gpu-check:
	LOCATTR_TEST_DEVICE=cuda $(PY) -m pytest -q -p no:cacheprovider tests/compute/test_attributions.py
	$(PY) -m benchmarks.bench_compute --skip-speedup --skip-real --gpu-prompts 96 --gpu-batch 16

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis $(FRONTEND)/node_modules $(FRONTEND)/dist
