# s2snets: `make demo` and `make test` each set up what they need first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    := /usr/share/datasets/fashion-mnist
STAMP   := $(VENV)/.installed

.PHONY: setup data browser demo test bench lint clean device-pack

# make bench BENCH_ARGS=--demo also times `s2snets demo` from scratch (about 10 minutes).

setup: $(STAMP) data browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

data:
	@if [ -f $(DATA)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (or set S2SNETS_DATA)"; fi

# Headless Chromium checks that report.html renders; best effort (the test says why it skips without it).
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null 2>&1)) || echo "chromium could not be installed: the report rendering test will be skipped"; \
	else echo "optional: 'sudo apt-get install chromium' enables the report rendering test"; fi

demo: setup
	$(BIN)/s2snets demo

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

# What benchmarks/device_check.sh needs on a lent GPU machine (its image lacks these three packages and the data).
device-pack: setup
	rm -rf .devpack && mkdir -p .devpack/fashion-mnist
	cp $(DATA)/*-ubyte.gz .devpack/fashion-mnist/
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: -d .devpack/wheels \
	  $$($(BIN)/python -m pip list --format=freeze 2>/dev/null | grep -iE '^(concepts|bitsets|graphviz)==')
	du -sh .devpack

clean:
	rm -rf $(VENV) runs .pytest_cache
