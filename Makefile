# The project's commands; the README documents each target.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
export DAGSTER_HOME := $(CURDIR)/.ats/dagster
export DAGSTER_TELEMETRY_DISABLED := 1
export FEAST_USAGE := False
export GX_ANALYTICS_ENABLED := False
UV := uv run --frozen

.PHONY: setup demo test test-community ui lint fmt bench db-up db-down prod-local prod-down

setup:
	@bash scripts/setup.sh

db-up: setup
	@$(UV) ats db up
	@$(UV) ats db migrate
	@$(UV) ats dagster prepare
	@$(UV) ats cache up

db-down:
	@$(UV) ats db down
	@$(UV) ats cache down

demo: db-up
	@$(UV) ats demo

test: db-up
	@$(UV) pytest

# The suite on TimescaleDB Community (the production edition), from a build made by
# ../shared/tools/timescale-community.sh; its own cluster, ports and state dir (.ats-community/).
ATS_COMMUNITY_PREFIX ?= /opt/ats-pg-community
COMMUNITY_ENV = ATS_PG_BINDIR=$$bindir ATS_STATE_DIR=$(CURDIR)/.ats-community \
	ATS_DB_PORT=$${ATS_COMMUNITY_DB_PORT:-55533} ATS_REDIS_PORT=$${ATS_COMMUNITY_REDIS_PORT:-56533}
test-community: setup
	@bindir=$$(ls -d $(ATS_COMMUNITY_PREFIX)/usr/lib/postgresql/*/bin 2>/dev/null | tail -1); \
	if [ -z "$$bindir" ] || ! ls $$bindir/../lib/timescaledb-tsl-*.so >/dev/null 2>&1; then \
	  echo "test-community: no TimescaleDB Community build under $(ATS_COMMUNITY_PREFIX); build one with ../shared/tools/timescale-community.sh (or set ATS_COMMUNITY_PREFIX)"; exit 1; fi; \
	$(COMMUNITY_ENV) $(UV) pytest $(PYTEST_ARGS); status=$$?; \
	$(COMMUNITY_ENV) $(UV) ats db down >/dev/null; $(COMMUNITY_ENV) $(UV) ats cache down >/dev/null; \
	exit $$status

# `make ui HOST=0.0.0.0 PORT=3001`; `ats dagster ui` itself brings up the database, the cache
# and (local profile, no ATS_EXCHANGE_URL) the exchange emulator.
ui: db-up
	@$(UV) ats dagster ui $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

prod-local: setup
	@$(UV) ats prod up

prod-down:
	@$(UV) ats prod down

lint:
	@$(UV) ruff check .
	@$(UV) ruff format --check .
	@$(UV) pyright

fmt:
	@$(UV) ruff format .
	@$(UV) ruff check --fix .

bench: db-up
	@for f in bench/bench_*.py; do echo "== $$f"; $(UV) python $$f || exit 1; done
