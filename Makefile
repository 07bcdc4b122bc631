# One entry point for developers and CI alike: `make test` is what .ci/run calls.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install demo test lint typecheck servers pytest bench format clean deploy-files

help:
	@echo "make demo   set up and run the aivitals demo"
	@echo "make test   set up, lint, type-check and run the whole test suite"
	@echo "make bench  run the benchmarks and print their tables (see docs/benchmarks.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package's dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/aivitals demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The real servers some tests start (tests/support/realservers.py); installed only when missing.
TEST_SERVERS := prometheus prometheus-alertmanager chromium redis-server postgresql-15 faketime

servers:
	scripts/install-test-servers $(TEST_SERVERS)

# OpenLIT, for the OTLP test of what each instrumentation sends: installed without its
# dependencies, since resolving them takes minutes and pins old OpenTelemetry packages; the ones
# it imports at run time are in the test extra already (tests/test_otlp_instrumentations.py).
OPENLIT := openlit==1.45.0
$(VENV)/.openlit: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps '$(OPENLIT)'
	@touch $@

pytest: $(STAMP) $(VENV)/.openlit servers
	$(BIN)/pytest

test: lint typecheck pytest

# About 45 minutes in all (the soak alone 15). The query benchmark keeps its generated stores in .bench/ (1M and 10M calls, about 5 GB) and
# reuses them on later runs.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sdk.py --write docs/benchmarks.md
	$(BIN)/python benchmarks/bench_store_ingest.py --calls 200000 --batch 1000 --write docs/benchmarks.md
	$(BIN)/python benchmarks/bench_store_ingest.py --busy --seconds 5 --app sdk --runs 2 --write docs/benchmarks.md
	$(BIN)/python benchmarks/bench_store_ingest.py --busy --seconds 5 --app sdk --runs 3 --writer process --write docs/benchmarks.md
	$(BIN)/python benchmarks/bench_store_ingest.py --busy --seconds 5 --app spin --runs 2 --write docs/benchmarks.md
	$(BIN)/python benchmarks/bench_ingest_http.py --calls 60000 --write docs/benchmarks.md
	$(BIN)/python benchmarks/bench_otlp.py --spans 102400 --write docs/benchmarks.md
	mkdir -p .bench
	$(BIN)/python benchmarks/bench_queries.py --calls 1000000,10000000 --dir .bench --write docs/benchmarks.md
	$(BIN)/python benchmarks/bench_drift.py --calls 1000000,10000000 --dir .bench --runs 7 --write docs/benchmarks.md
	$(MAKE) bench-gateway
	$(BIN)/python benchmarks/bench_gateway_closed.py --write docs/benchmarks.md
	$(BIN)/python benchmarks/bench_soak.py --rows default,no-db --seconds 420 --warmup-s 150 --write docs/benchmarks.md
	$(BIN)/python benchmarks/bench_windows.py --write docs/benchmarks.md

# The gateway against LiteLLM's proxy (installed into .bench/litellm-venv on first use, about
# 740 MB) over the same fake upstream; installs wrk from Debian if missing. About 12 minutes;
# `$(BIN)/python benchmarks/bench_gateway.py --quick` checks it works in about one.
.PHONY: bench-gateway
bench-gateway: $(STAMP)
	$(BIN)/python benchmarks/bench_gateway.py --write docs/benchmarks.md

# The files of deploy/ that aivitals exports (alert rules, Grafana dashboard): rewrite them after
# changing a rule or a panel; tests/test_deploy_exports.py fails while they are stale.
deploy-files: $(STAMP)
	AIVITALS=$(abspath $(BIN))/aivitals deploy/regenerate

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
