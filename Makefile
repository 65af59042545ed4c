# Stripe → PostgreSQL. `make` (or `make help`) lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

ENV ?= DEV
SOURCE ?= json
JSON_DIR ?= data/imported_stripe_data
MODE ?= upsert
RESOURCES ?=
FILE ?=
N ?=
MSG ?= schema change
REPORT ?= data/reports/check_db.json
# demo-sample's own database on the dev server, so the sample never mixes with the demo's rows
SAMPLE_DATABASE_URL ?= postgresql://postgres:postgres@127.0.0.1:5434/stripe_db_sample
FETCH_RATE ?=
BENCH_CUSTOMERS ?= 500
SWEEP ?=
FOLLOW ?=
INTERVAL ?= 2
WEBHOOK_HOST ?= 127.0.0.1
WEBHOOK_PORT ?= 8010
# Stripe's example objects, which `make test-shared` checks the transformers and the sandbox against
STRIPE_FIXTURES ?= ../shared/stripe/fixtures3.json

# User values reach the recipes only as environment variables, quoted there ("$$JSON_DIR"), never
# as text pasted into a shell command line: `RESOURCES='x"; rm -rf …'` stays one argument and a
# JSON_DIR with spaces one path. $(value …) takes each value as typed, so a `$(shell …)` in it is
# not run by make either.
USER_VARS := ENV SOURCE JSON_DIR MODE RESOURCES FILE N MSG REPORT SAMPLE_DATABASE_URL FETCH_RATE \
	BENCH_CUSTOMERS SWEEP FOLLOW INTERVAL WEBHOOK_HOST WEBHOOK_PORT STRIPE_FIXTURES
$(foreach var,$(USER_VARS),$(eval override $(var) := $$(value $(var))))
export $(USER_VARS)

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# one table a per-table script (scripts/ingest/ingest_<table>.py), which tests keep one a
# resource of the registry: a resource added there has its `make ingest-<table>` at once
TABLES := $(patsubst scripts/ingest/ingest_%.py,%,$(wildcard scripts/ingest/ingest_*.py))
INGEST_ARGS = --source "$$SOURCE" --json-dir "$$JSON_DIR" --mode "$$MODE"

.PHONY: help install demo demo-sample db-up db-down db-status init-db reset-db init-migration \
	ingest-all $(addprefix ingest-,$(TABLES)) test test-fast test-shared shared-fixtures lint bench-ingest guard-dev clean \
	sandbox sandbox-stop sandbox-reset sandbox-status sandbox-seed bench-sandbox check-db \
	bench-check-db populate populate-force fetch bench-fetch sync webhook bench-sync

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_%-]+:.*## / {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf "  \033[36m%-22s\033[0m %s\n" "ingest-<table>" "Ingest one table: $(TABLES) (FILE=… SOURCE=…)"
	@echo ""
	@printf '  Variables: ENV=%s SOURCE=%s JSON_DIR=%s MODE=%s RESOURCES=… FILE=…\n' \
		"$$ENV" "$$SOURCE" "$$JSON_DIR" "$$MODE"

# the goals are user text too: they reach the shell through the environment like the variables
guard-dev: export GUARDED_GOALS := $(MAKECMDGOALS)
guard-dev:
	@if [[ $${ENV^^} == PROD ]]; then \
		printf "error: '%s' is refused under ENV=PROD: it populates or destroys data (DEV only).\n" \
			"$$GUARDED_GOALS" >&2; \
		exit 1; fi

$(STAMP): pyproject.toml
	@command -v python3 >/dev/null || { echo "error: python3 (3.11+) is needed" >&2; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP) ## Create .venv and install the project with its dev tools

demo: guard-dev $(STAMP) db-up sandbox init-db ## The whole pipeline on local defaults: databases, sandbox, populate, fetch, ingest, verify
	$(PY) scripts/populate.py
	RESOURCES= scripts/fetch_stripe_data.sh
	$(PY) scripts/ingest_all.py --json-dir "$$JSON_DIR" --sweep
	$(PY) scripts/check_db_integrity.py --json-dir "$$JSON_DIR"

demo-sample: $(STAMP) db-up ## Ingest and verify the small export in data/sample, in a database of its own
	DATABASE_URL="$$SAMPLE_DATABASE_URL" $(PY) scripts/init_db.py --only dev
	DATABASE_URL="$$SAMPLE_DATABASE_URL" $(PY) scripts/ingest_all.py --json-dir data/sample
	DATABASE_URL="$$SAMPLE_DATABASE_URL" $(PY) scripts/check_db_integrity.py --json-dir data/sample

db-up: $(STAMP) ## Start PostgreSQL dev (5434) and test (5435): docker compose, else embedded
	$(PY) scripts/db_servers.py up

db-down: $(STAMP) ## Stop both PostgreSQL servers (data is kept)
	$(PY) scripts/db_servers.py down

db-status: $(STAMP) ## Show whether both PostgreSQL servers answer
	$(PY) scripts/db_servers.py status

init-db: $(STAMP) ## Create stripe_db_dev and stripe_db_test and migrate both to head
	$(PY) scripts/init_db.py

reset-db: guard-dev $(STAMP) ## Drop and recreate both databases (DEV only)
	$(PY) scripts/init_db.py --reset

init-migration: $(STAMP) ## Autogenerate an Alembic revision if the models changed (MSG="…")
	$(PY) scripts/init_migration.py -m "$$MSG"

populate: guard-dev $(STAMP) ## Create the fixture products, prices, customers, cards and subscriptions (idempotent)
	$(PY) scripts/populate.py

populate-force: guard-dev $(STAMP) ## populate, cancelling and recreating the fixture subscriptions
	$(PY) scripts/populate.py --force

fetch: $(STAMP) ## Fetch every resource with curl into JSON_DIR; resumes if interrupted (RESOURCES=… FETCH_RATE=25)
	scripts/fetch_stripe_data.sh

ingest-all: $(STAMP) ## Ingest every resource, parents first (SOURCE=json|api JSON_DIR=… RESOURCES=… SWEEP=1)
	$(PY) scripts/ingest_all.py $(INGEST_ARGS) $${RESOURCES:+--resources "$$RESOURCES"} $${SWEEP:+--sweep}

sync: $(STAMP) ## Apply Stripe's events since the last sync (FOLLOW=1 keeps polling every INTERVAL=2 s)
	$(PY) scripts/sync.py --interval "$$INTERVAL" $${FOLLOW:+--follow}

bench-sync: guard-dev $(STAMP) db-up ## Lag from a change in Stripe to its row: webhook and polling under churn (N=10000 customers)
	$(PY) scripts/bench_sync.py --customers "$${N:-10000}"

webhook: $(STAMP) ## Receive Stripe's webhooks into the inbox and apply them (WEBHOOK_HOST, WEBHOOK_PORT; needs STRIPE_WEBHOOK_SECRET)
	$(PY) scripts/webhook.py --host "$$WEBHOOK_HOST" --port "$$WEBHOOK_PORT"

# one target per table (ingest-products … ingest-charges), listed in `make help`
$(addprefix ingest-,$(TABLES)): ingest-%: $(STAMP)
	$(PY) scripts/ingest/ingest_$*.py $(INGEST_ARGS) $${FILE:+--file "$$FILE"}

ingest-%: export UNKNOWN_TABLE = $*
ingest-%:
	@printf "error: no table '%s'; tables: %s\n" "$$UNKNOWN_TABLE" "$(TABLES)" >&2; exit 2

sandbox: $(STAMP) ## Start the local Stripe sandbox in the background (127.0.0.1:12111)
	$(PY) -m app.sandbox start

sandbox-stop: $(STAMP) ## Stop the local Stripe sandbox (its state is kept in data/sandbox/state.pickle)
	$(PY) -m app.sandbox stop

sandbox-reset: guard-dev $(STAMP) ## Empty the running sandbox
	$(PY) -m app.sandbox reset

sandbox-status: $(STAMP) ## Is the sandbox running?
	$(PY) -m app.sandbox status

sandbox-seed: guard-dev $(STAMP) sandbox ## Fill the sandbox with N customers and their objects (N=…)
	$(PY) -m app.sandbox seed --customers "$${N:-1000}"

bench-fetch: $(STAMP) ## Backfill a seeded sandbox (SOURCE=api, curl) at 100/25 req/s and unlimited: rates, 429s, memory (BENCH_CUSTOMERS=500)
	$(PY) scripts/bench_fetch.py --customers "$$BENCH_CUSTOMERS"

bench-sandbox: $(STAMP) ## Requests/s the sandbox serves for full list pages with expand[]
	$(PY) scripts/bench_sandbox.py

check-db: $(STAMP) ## Verify the database against Stripe: counts, ids, fields, foreign keys (SOURCE=json|api JSON_DIR=…)
	$(PY) scripts/check_db_integrity.py --source "$$SOURCE" --json-dir "$$JSON_DIR" $${RESOURCES:+--resources "$$RESOURCES"} \
		--json "$$REPORT"

bench-check-db: guard-dev $(STAMP) db-up ## Check vs ingest on N synthetic objects: times, ratio, peak memory
	$(PY) scripts/bench_check_db.py --n "$${N:-200000}"

# the tiers select by the markers tests/conftest.py and the tests set (pyproject.toml lists them)
test: guard-dev $(STAMP) db-up ## Run the test suite against stripe_db_test (all but the checks against STRIPE_FIXTURES)
	$(PY) -m pytest -m "not shared"

test-fast: guard-dev $(STAMP) db-up ## The edit loop, well under a minute: the mirror's tests on PostgreSQL, without the sandbox, subprocesses or slow tests
	HYPOTHESIS_PROFILE=fast $(PY) -m pytest -m "not shared and not e2e and not slow and not sandbox"

test-shared: guard-dev shared-fixtures $(STAMP) db-up ## Check the transformers and the sandbox against Stripe's example objects (STRIPE_FIXTURES)
	$(PY) -m pytest -m shared

shared-fixtures:
	@path=$$STRIPE_FIXTURES; [[ $$path == /* ]] || path=$$PWD/$$path; \
	if [[ ! -f $$path ]]; then \
		printf "error: Stripe's example objects are not at %s: put fixtures3.json there, or set STRIPE_FIXTURES=/path/to/fixtures3.json\n" \
			"$$path" >&2; \
		exit 1; fi

lint: $(STAMP) ## ruff, mypy, the layers and no import cycle (import-linter), and shellcheck when installed
	$(VENV)/bin/ruff check app scripts tests alembic
	$(VENV)/bin/ruff format --check app scripts tests alembic
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@if command -v shellcheck >/dev/null; then shellcheck -x scripts/*.sh; \
	else echo "shellcheck not installed: skipped (apt-get install shellcheck)"; fi

bench-ingest: guard-dev $(STAMP) db-up ## Ingest N synthetic objects vs raw COPY: rows/s, ratio, peak memory
	$(PY) scripts/bench_ingest.py --n "$${N:-200000}"

clean: ## Remove fetched JSON, rejects and reports (keeps databases)
	rm -rf data/imported_stripe_data data/rejects data/reports data/bench
