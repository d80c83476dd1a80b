# FastAPI concurrency lab. `make help` lists the targets; every target is a thin wrapper
# around a command you can also run yourself (shown in README.md and docs/).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# pytest arguments, e.g. `make test PYTEST_ARGS="-k faults -x"`
PYTEST_ARGS ?=
# compare and capacity knobs, e.g. `make compare SCENARIOS=upstream,cpu-python USERS=200 DURATION=30s`
# (VARIANTS: empty = every variant of services/registry.py; TARGETS: variant=url,... or one URL
# with {variant}, like LAB_TARGETS; empty = $$LAB_TARGETS, else the native lab ports)
SCENARIOS     ?= upstream
VARIANTS      ?=
USERS         ?= 200
SPAWN_RATE    ?=
DURATION      ?= 30s
WARMUP        ?= 5s
DELAY_MS      ?= 200
WORK          ?= 20
TARGETS       ?=
OUT           ?= results
SLO_MS        ?= 500
MAX_USERS     ?= 800
STEP_DURATION ?= 10s
# open loop (docs/loadtest.md#open-loop-and-closed-loop): requests on a schedule, latency from
# the scheduled start. compare: `ARRIVAL_RATE=200` (req/s) instead of USERS, or
# `PAIR_OPEN_LOOP=1`: each closed run, then an open one at its req/s. capacity: `OPEN_LOOP=1`
# steps the default arrival rates instead of users, `RATES=10,20,50` steps those.
# ARRIVALS: poisson (default) or fixed. COMPARE_ARGS / CAPACITY_ARGS: any other option.
ARRIVAL_RATE   ?=
PAIR_OPEN_LOOP ?=
OPEN_LOOP      ?=
RATES          ?=
ARRIVALS       ?=
COMPARE_ARGS   ?=
CAPACITY_ARGS  ?=

.DEFAULT_GOAL := help
.PHONY: help venv lock lint test test-ui lab bench-upstream bench-floor compare capacity drill reference docs-check up urls down logs ps e2e clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

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

lint: venv ## ruff check + format check; mypy --strict; compose.yaml against the Compose Specification
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml

test: venv lint ## lint, then every test against real servers (PostgreSQL, upstream, APIs)
	$(PY) -m pytest $(PYTEST_ARGS)

# Debian's chromium for the browser test: Playwright's own browser download is not used.
CHROMIUM ?= /usr/bin/chromium

test-ui: venv ## Locust's web UI in headless chromium (installs Debian's chromium if missing)
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
		else echo "make test-ui: needs $(CHROMIUM): sudo apt-get install chromium"; exit 2; fi; }
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest -m ui tests/ui $(PYTEST_ARGS)

lab: venv ## natively: PostgreSQL, upstream, every variant and Locust's UI; Ctrl-C stops all
	$(PY) -m services.lab

bench-upstream: venv ## prove the mock upstream is never the bottleneck (one core, 2,000 req/s)
	$(PY) -m services.upstream.bench

# bench-floor knobs, e.g. `make bench-floor VARIANTS=async FLOOR_ARGS="--users 100 --rounds 40"`
FLOOR_ARGS ?=

bench-floor: venv ## each variant vs a minimal app of its stack: CPU/request ratios, fails above 1.10 (~16 min)
	$(PY) -m loadtest.bench_floor $(if $(VARIANTS),--variants $(VARIANTS)) --out $(OUT) $(FLOOR_ARGS)

compare: venv ## same load on each variant (closed loop; ARRIVAL_RATE=R: open loop): results/<time>/ (needs `make lab`)
	$(PY) -m loadtest.compare --scenarios $(SCENARIOS) $(if $(VARIANTS),--variants $(VARIANTS)) \
		--users $(USERS) $(if $(SPAWN_RATE),--spawn-rate $(SPAWN_RATE)) \
		--duration $(DURATION) --warmup $(WARMUP) \
		$(if $(ARRIVAL_RATE),--arrival-rate $(ARRIVAL_RATE)) $(if $(PAIR_OPEN_LOOP),--pair-open-loop) \
		$(if $(ARRIVALS),--arrivals $(ARRIVALS)) \
		--delay-ms $(DELAY_MS) --work $(WORK) $(if $(TARGETS),--targets $(TARGETS)) --out $(OUT) \
		$(COMPARE_ARGS)

capacity: venv ## step users (OPEN_LOOP=1: arrival rates) up until p95 > SLO_MS: the knee per variant
	$(PY) -m loadtest.capacity --scenarios $(SCENARIOS) $(if $(VARIANTS),--variants $(VARIANTS)) \
		--slo-ms $(SLO_MS) --max-users $(MAX_USERS) --step-duration $(STEP_DURATION) \
		$(if $(RATES),--arrival-rate $(RATES),$(if $(OPEN_LOOP),--arrival-rate)) \
		$(if $(ARRIVALS),--arrivals $(ARRIVALS)) \
		--delay-ms $(DELAY_MS) --work $(WORK) $(if $(TARGETS),--targets $(TARGETS)) --out $(OUT) \
		$(CAPACITY_ARGS)

# drill knobs, e.g. `make drill DRILL=db-restart VARIANTS=sync,async DRILL_ARGS="--users 10"`
DRILL      ?= db-restart
DRILL_ARGS ?=

drill: venv ## one fault under steady load, rules checked per variant: results/<time>-drill-DRILL/
	$(PY) -m loadtest.drill $(DRILL) $(if $(VARIANTS),--variants $(VARIANTS)) --out $(OUT) $(DRILL_ARGS)

# reference knobs: empty = the whole matrix (every scenario x every variant, capacity on upstream
# and cpu-python, 30 s runs), e.g. a quick try that leaves docs/results alone:
# `make reference REF_SCENARIOS=upstream REF_VARIANTS=sync,async REF_DURATION=3s REF_ARGS="--out /tmp/ref"`
REF_SCENARIOS ?=
REF_VARIANTS  ?=
REF_DURATION  ?=
REF_ARGS      ?=

reference: venv ## the whole matrix + capacity on a lab it starts: docs/results/<date>-<machine>/ (quiet machine!)
	$(PY) -m tools.reference run $(if $(REF_SCENARIOS),--scenarios $(REF_SCENARIOS)) \
		$(if $(REF_VARIANTS),--variants $(REF_VARIANTS)) \
		$(if $(REF_DURATION),--duration $(REF_DURATION)) $(REF_ARGS)

# docs-check knobs: PAGES limits it to pages (PAGE:LINE to one checkable block), e.g.
# `make docs-check PAGES=docs/labs/02-awaiting-io.md`; DOCS_CHECK_ARGS="--no-blocks" skips the lab.
PAGES           ?=
DOCS_CHECK_ARGS ?=

docs-check: venv ## docs/ kept true: links, named files and targets, quoted reference numbers, checkable blocks
	$(PY) -m tools.docs_check $(PAGES) $(DOCS_CHECK_ARGS)

# ---- containers: `make up` -------------------------------------------------------------
# The compose command: Docker Compose where a Docker engine answers, else Podman
# (podman-compose, or `podman compose`), else nothing and `make up` runs the native lab.
# Override with COMPOSE="docker compose" (or any compose command).
ifeq ($(origin COMPOSE), undefined)
COMPOSE := $(shell \
	if docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then echo "docker compose"; \
	elif command -v podman-compose >/dev/null 2>&1 && podman info >/dev/null 2>&1; then echo podman-compose; \
	elif podman compose version >/dev/null 2>&1; then echo "podman compose"; fi)
endif
DC := $(COMPOSE) -f compose.yaml
# `make up WORKERS=4`: make exports command-line variables, so compose reads it from the
# environment (a plain `make up` leaves .env's default in force).
# podman-compose keeps a running container when its image was rebuilt (Docker Compose replaces
# it): without this `make up` after a code change would go on serving the old code.
UP_FLAGS := $(if $(findstring podman-compose,$(COMPOSE)),--force-recreate)
NEED_ENGINE = @test -n "$(strip $(COMPOSE))" || { echo "make $@: needs Docker or Podman (none answers)"; exit 2; }

up: ## the whole lab in containers (Docker, else Podman; else the native lab), then print the URLs
ifeq ($(strip $(COMPOSE)),)
	@echo "make up: no container engine answers (docker info / podman info failed): starting the native lab instead (make lab)."
	@$(MAKE) --no-print-directory lab
else
	$(DC) up -d --build --wait $(UP_FLAGS)
	@$(MAKE) --no-print-directory urls
endif

urls: ## print every URL of the lab
	@echo ""
	@echo "FastAPI concurrency lab:"
	@echo "  Locust web UI   http://localhost:8089   (pick a variant and a scenario, press start)"
	@$(PYTHON) -m services.registry | while read -r name port; do \
		printf '  api-%-10s  http://localhost:%s/docs   http://localhost:%s/runtime\n' $$name $$port $$port; done
	@echo "  upstream        http://localhost:8080/todos/1"
	@echo ""

down: ## stop and remove the lab's containers, network and volumes
	$(NEED_ENGINE)
	$(DC) down --remove-orphans --volumes
ifneq (,$(findstring podman,$(COMPOSE)))
	@# podman-compose removes only as many workers as the file asks for now (make up WORKERS=4,
	@# then make down): sweep whatever is left of the project by its label.
	@podman ps -aq --filter label=io.podman.compose.project=fastapi-lab | xargs -r podman rm -f >/dev/null
	@podman volume ls -q --filter label=io.podman.compose.project=fastapi-lab | xargs -r podman volume rm -f >/dev/null
	@podman network ls -q --filter label=io.podman.compose.project=fastapi-lab | xargs -r podman network rm -f >/dev/null
endif

logs: ## follow the containers' logs
	$(NEED_ENGINE)
	$(DC) logs -f --tail=100

ps: ## list the lab's containers
	$(NEED_ENGINE)
	$(DC) ps

e2e: ## in containers: up, a short Locust run of every variant from the locust container, down
	$(NEED_ENGINE)
	@status=0; \
	$(DC) up -d --build --wait && $(DC) exec -T locust python -m loadtest.e2e || status=$$?; \
	$(MAKE) --no-print-directory down; \
	exit $$status

clean: ## remove the virtualenv, caches and lab logs
	rm -rf $(VENV) .lab .pytest_cache .ruff_cache
