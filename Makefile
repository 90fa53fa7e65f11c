# The project's commands; the README documents each target.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
export DAGSTER_HOME := $(CURDIR)/.ats/dagster
export DAGSTER_TELEMETRY_DISABLED := 1
export FEAST_USAGE := False
export GX_ANALYTICS_ENABLED := False
UV := uv run --frozen

.PHONY: setup demo test ui lint fmt bench db-up db-down prod-local prod-down

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

ui: db-up
	@$(UV) ats dagster ui

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
