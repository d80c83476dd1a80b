# FastAPI concurrency lab. `make help` lists the targets; every target is a thin wrapper
# around a command you can also run yourself (shown in README.md).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# pytest arguments, e.g. `make test PYTEST_ARGS="-k faults -x"`
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv lock lint test lab bench-upstream clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/.installed: requirements.lock.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock.txt
	@touch $@

venv: $(BIN)/.installed ## create .venv with the pinned dependencies

lock: ## re-pin requirements.lock.txt from requirements.txt (needs the network)
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.txt
	.lock-venv/bin/pip freeze --exclude-editable > requirements.lock.txt
	rm -rf .lock-venv

lint: venv ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv lint ## lint, then every test against real servers (PostgreSQL, upstream, APIs)
	$(PY) -m pytest $(PYTEST_ARGS)

lab: venv ## run PostgreSQL, the upstream and the four variants natively; Ctrl-C stops all
	$(PY) -m services.lab

bench-upstream: venv ## prove the mock upstream is never the bottleneck (one core, 2,000 req/s)
	$(PY) -m services.upstream.bench

clean: ## remove the virtualenv, caches and lab logs
	rm -rf $(VENV) .lab .pytest_cache .ruff_cache
