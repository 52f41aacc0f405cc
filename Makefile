# s2snets: `make demo` and `make test` each set up what they need first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    := /usr/share/datasets/fashion-mnist
STAMP   := $(VENV)/.installed
# Two test workers (pytest-xdist), handed one test at a time, slow ones first; the quick demo runs once (tests/conftest.py).
XDIST   ?= -n 2 --dist loadgroup
# The second environment of test-compat: the newest torch/torchvision the package index serves (raise on a release).
# Its own venv inside .venv (so `make clean` and .gitignore cover it); PIP_CONFIG_FILE=/dev/null because this
# machine's pip configuration caps torch at the version on its disk.
COMPAT_TORCH ?= torch==2.15.0 torchvision==0.29.2
COMPAT  := $(VENV)/compat
# What runs there: the API, layers, measures, lint, models, data, checkpoints and the CLI's quick commands; not the
# zoo's scores or the end-to-end runs (bit-exact on constraints.txt's versions only) -- `-m "not slow"` as well.
COMPAT_TESTS ?= tests/test_api.py tests/test_attribution.py tests/test_checkpoint.py tests/test_config.py \
  tests/test_data.py tests/test_layers.py tests/test_lattice.py tests/test_models.py tests/test_nmi.py \
  tests/test_overlap_lint.py tests/test_spectrum_pattern.py tests/test_transfer.py
# test-fast: the unit tests of the measures, layers, models, lint, config and CLI messages (no training runs, no
# killed processes, no end-to-end runs, not the docs' examples): 264 CPU-seconds, measured.
FAST_TESTS ?= tests/test_architecture.py tests/test_cli.py tests/test_config.py tests/test_controls.py \
  tests/test_data.py tests/test_input_holes.py tests/test_lattice.py tests/test_layers.py tests/test_models.py \
  tests/test_nmi.py tests/test_overlap_lint.py tests/test_spectrum_pattern.py tests/test_transfer.py

.PHONY: setup data browser demo test test-fast test-compat bench lint clean device-pack

# make bench BENCH_ARGS=--demo also times `s2snets demo` from scratch (about 10 minutes).

setup: $(STAMP) data browser

# pyproject.toml gives ranges; constraints.txt the exact versions of the reproducible runs.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
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

# The full suite, the 15 slowest tests listed at the end.
test: setup
	$(BIN)/python -m pytest $(XDIST) --durations=15

# Day to day (the full suite stays `make test`).
test-fast: setup
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(FAST_TESTS)

# torch/torchvision first, then the package: installing s2snets must keep them (the diff fails otherwise).
$(COMPAT)/.installed: pyproject.toml
	test -x $(COMPAT)/bin/python || $(PY) -m venv $(COMPAT)
	PIP_CONFIG_FILE=/dev/null $(COMPAT)/bin/python -m pip install -q --upgrade pip $(COMPAT_TORCH)
	$(COMPAT)/bin/python -m pip freeze | grep -E '^torch(vision)?==' > $(COMPAT)/torch.txt
	PIP_CONFIG_FILE=/dev/null $(COMPAT)/bin/python -m pip install -q -e '.[dev]'
	$(COMPAT)/bin/python -m pip freeze | grep -E '^torch(vision)?==' | diff $(COMPAT)/torch.txt -
	touch $@

test-compat: $(COMPAT)/.installed data
	$(COMPAT)/bin/python -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'
	$(COMPAT)/bin/python -m pytest $(XDIST) -m "not slow" $(COMPAT_TESTS)

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
