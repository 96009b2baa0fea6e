# AlphaDB ELT. `make run` is the nightly job; `make test` the whole suite (offline, in parallel);
# `make check` the quick loop (no end-to-end, no fault suite); `make demo` the nightly job against
# the bundled CoinGecko simulator.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# pytest-xdist workers: one per core. Each worker starts its own embedded PostgreSQL; tests sharing
# a machine-wide resource (the cron daemon) are grouped onto one worker (xdist_group).
WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -q -n $(WORKERS) --dist loadgroup

.PHONY: install run test check lint demo docs bench reliability psql clean report-screenshot

install: $(STAMP)

# Re-installs when the project definition changes; a failed install leaves no stamp.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	scripts/run_elt.sh

test: $(STAMP) lint
	$(PYTEST)

# The day-to-day loop, by pytest marker: sqlfluff, the unit tests and dbt's unit tests; not the
# tests on a real PostgreSQL (`db`), the end-to-end runs (`slow`) nor the fault suite (`faults`),
# which `make test` (and CI) run.
check: $(STAMP) lint
	$(PYTEST) -m "dbt_unit or not (db or slow or faults)"

lint: $(STAMP)
	$(BIN)/sqlfluff lint dbt_alphadb

demo: $(STAMP)
	scripts/demo.sh

docs: $(STAMP)
	$(BIN)/alphadb docs --serve

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The fault suite, recording its measurements into docs/reliability.json and docs/reliability.md.
reliability: $(STAMP)
	ALPHADB_RELIABILITY_JSON=$(CURDIR)/docs/reliability.json $(BIN)/python -m pytest -q -m faults
	$(BIN)/python scripts/render_reliability.py docs/reliability.json

# The README's picture of the data-quality page, from demo data (throwaway home and database).
report-screenshot: $(STAMP)
	scripts/report_screenshot.sh docs/report-screenshot.png

psql: $(STAMP)
	$(BIN)/alphadb psql

# The embedded PostgreSQL runs from .venv: stop it first (its data in .alphadb/ stays), and delete
# nothing if it cannot be stopped (e.g. a run in progress).
clean:
	@if [ -x $(BIN)/alphadb ]; then $(BIN)/alphadb db stop || { echo "make clean: the database could not be stopped; nothing deleted" >&2; exit 1; }; fi
	rm -rf $(VENV) .pytest_cache .hypothesis dbt_alphadb/target dbt_alphadb/logs
