# AlphaDB ELT. `make run` is the nightly job; `make test` the whole suite (offline);
# `make demo` the nightly job against the bundled CoinGecko simulator.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint demo docs bench reliability psql clean report-screenshot

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
	$(BIN)/python -m pytest -q

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
	ALPHADB_RELIABILITY_JSON=$(CURDIR)/docs/reliability.json $(BIN)/python -m pytest -q \
		tests/test_faults_loader.py tests/test_faults_pipeline.py tests/test_security.py
	$(BIN)/python tests/fault_support.py docs/reliability.json

# The README's picture of the data-quality page, from demo data (throwaway home and database).
report-screenshot: $(STAMP)
	scripts/report_screenshot.sh docs/report-screenshot.png

psql: $(STAMP)
	$(BIN)/alphadb psql

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis dbt_alphadb/target dbt_alphadb/logs
