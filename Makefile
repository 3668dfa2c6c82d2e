# The two commands: `make run` starts the whole pipeline locally, `make test` runs every test.
# Each installs what it needs into .venv (and .venv-infra for the Terraform scan).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INFRA_VENV := .venv-infra
STAMP := $(VENV)/.installed
INFRA_STAMP := $(INFRA_VENV)/.installed

.PHONY: run test lint bench redrive replay demo report reconcile clean venv

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

$(INFRA_STAMP): requirements-infra.txt
	test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet -r requirements-infra.txt
	touch $@

venv: $(STAMP)

## Start emulators, Pub/Sub topology, the four functions and the TikTok sandbox; what dies is restarted (Ctrl-C stops all).
run: $(STAMP)
	$(BIN)/python scripts/localstack.py run --fresh-logs

## Every test: unit, emulator-backed, end-to-end through the local stack, browser, infrastructure.
test: $(STAMP) $(INFRA_STAMP) lint
	scripts/ensure-system-deps.sh
	CHECKOV_BIN=$(abspath $(INFRA_VENV))/bin/checkov $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Benchmarks (not part of `make test`): bounded load on loopback, prints figures, writes JSON.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## Re-drive dead events after fixing their cause: make redrive ARGS="--list"
## Against the running `make run` stack with nothing exported (it writes .run/stack.json).
redrive: $(STAMP)
	$(BIN)/python -m functions.sender.redrive $(ARGS)

## Publish parked WooCommerce orders from their log lines: make replay < parked.jsonl (ARGS=--dry-run)
replay: $(STAMP)
	$(BIN)/python -m functions.woocommerce_webhook.replay $(ARGS)

## A first event: consent through collect, a signed Shopify and WooCommerce order, what the sandbox got.
## ARGS="--cart TOKEN": only the Shopify order for the cart the demo shop page granted consent for.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py $(ARGS)

## What happened to orders and events per source and day, from Firestore: make report ARGS="--since 7d --json"
## Against the running `make run` stack with nothing exported; else GOOGLE_CLOUD_PROJECT and gcloud credentials.
report: $(STAMP)
	$(BIN)/python -m shared.report $(ARGS)

## Every order the shop sold, accounted for: make reconcile ARGS="--since 3d --backfill" (--repair, --json)
## Lists the shops' orders through their APIs; against the running `make run` stack with nothing exported.
reconcile: $(STAMP)
	$(BIN)/python scripts/reconcile.py $(ARGS)

clean:
	rm -rf $(VENV) $(INFRA_VENV) .run .pytest_cache
