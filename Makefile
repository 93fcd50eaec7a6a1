# omniembed: two set-up commands on a fresh machine: `make run` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8000
MODELS ?=# empty: `omniembed serve`'s offline defaults (minilm,efficientnet-lite0,sfx-cnn,speaker-ge2e)

.PHONY: install run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so pip takes the local CPU build instead of a CUDA one from the registry.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	$(BIN)/pip install -q --disable-pip-version-check --no-deps aisfx resemblyzer  # weights; old pins
	touch $@

install: $(STAMP)

# The main job: the HTTP server with the offline default models (Ctrl-C stops it).
run: install
	$(BIN)/omniembed models
	$(BIN)/omniembed serve --host 127.0.0.1 --port $(PORT) $(if $(MODELS),--models $(MODELS))

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: install lint
	command -v espeak-ng >/dev/null || (apt-get update -qq && apt-get install -y -qq espeak-ng)
	command -v gdalinfo >/dev/null || (apt-get update -qq && apt-get install -y -qq gdal-bin)  # GIS read-back tests
	command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql)  # the job store's PostgreSQL tests
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)  # the playground's browser tests
	command -v strace >/dev/null || (apt-get update -qq && apt-get install -y -qq strace)  # tests/test_offline.py watches the server's system calls
	$(BIN)/pip show -q rs-embed >/dev/null 2>&1 || (d=$$(mktemp -d) && $(BIN)/pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 -d $$d rs-embed==0.3.1 && $(BIN)/pip install -q --disable-pip-version-check --no-deps --ignore-requires-python $$d/rs_embed-0.3.1-py3-none-any.whl)  # rs-embed 0.3.1 as a test reference: it needs Python 3.12, its pure-Python parts import here
	$(BIN)/python -m pytest -q

# Benchmarks (not tests): omniembed side by side with each reference, same inputs and threads.
# bench/report.py runs machine, text, image, audio, server and geo benchmarks and writes docs/benchmarks.md.
bench: install
	command -v espeak-ng >/dev/null || (apt-get update -qq && apt-get install -y -qq espeak-ng)  # audio clips
	$(BIN)/python bench/report.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
