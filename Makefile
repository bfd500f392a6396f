# The two commands: `make demo` and `make test`. Both install what they need (Debian 12, as root).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Kiosk/simulator stack: pcscd + the vpcd virtual reader driver; pyscard builds from source (swig).
SYSTEM_PACKAGES := pcscd vsmartcard-vpcd libpcsclite-dev swig build-essential pkg-config python3-venv python3-dev fonts-wqy-microhei
# Only the tests need these: PostgreSQL, pdftotext to read exported PDFs back, and Debian's
# Chromium with CJK fonts for the browser tests (Playwright cannot download its own browser here).
TEST_PACKAGES := postgresql poppler-utils chromium fonts-noto-cjk

.PHONY: demo test check lint typecheck schemas system-deps test-system-deps pcscd postgres venv clean

demo: system-deps venv pcscd
	$(BIN)/ecard demo

test: system-deps test-system-deps venv pcscd postgres
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m schemas.export --check
	$(BIN)/pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

schemas: venv
	$(BIN)/python -m schemas.export

system-deps:
	@scripts/ensure-apt.sh $(SYSTEM_PACKAGES)

test-system-deps:
	@scripts/ensure-apt.sh $(TEST_PACKAGES)

pcscd: system-deps
	@scripts/ensure-pcscd.sh

postgres: test-system-deps
	@scripts/ensure-postgres.sh

venv: $(STAMP)

$(STAMP): pyproject.toml | system-deps
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[agent,server,dev]'
	touch $(STAMP)

# Not part of `make test`: throughput, latency, reads and kiosk memory (benchmarks/bench.py),
# written to bench-results.json. `make bench BENCH_SCALE=town` for a quick run.
BENCH_SCALE ?= city
.PHONY: bench
bench: system-deps test-system-deps venv postgres
	$(BIN)/python benchmarks/bench.py --scale $(BENCH_SCALE)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
