# jaxnas — `make demo`, `make test` and `make lint` work on a fresh machine (they install first).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NAS := $(VENV)/bin/nas
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench bench-device clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,lint]"
	touch $(STAMP)

demo: install
	$(NAS) search examples/quick.yaml --out runs/demo

# Tests share one persistent XLA cache (their subprocesses too): what one test compiled,
# the next one that runs the same computation loads instead of compiling again.
test: install
	JAX_COMPILATION_CACHE_DIR=$(CURDIR)/.pytest_cache/xla JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.2 \
		$(PY) -m pytest -n 2 --dist worksteal --durations=15 tests

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m benchmarks

# The accelerator check (≤ 8 min on one H100): supernet step time and MFU in float32 and bfloat16,
# population chunks, joint vs sequential splits, device scaling; JSON in device_bench.json.
bench-device: install
	$(PY) -m benchmarks.device --out device_bench.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
