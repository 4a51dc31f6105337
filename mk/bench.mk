# The benchmark of issue 7: latency, scale, steady state and growth (docs/performance.md).
BENCH_ARGS ?=

# The operator under test runs from a venv with its runtime dependencies only, as in the image.
RUNTIME_VENV ?= .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/.installed

$(RUNTIME_STAMP): pyproject.toml
	@test -x $(RUNTIME_VENV)/bin/python || python3 -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install -q -e .
	@touch $@

.PHONY: runtime-venv
runtime-venv: $(RUNTIME_STAMP) ## .venv-runtime: the package with its runtime dependencies only (as in the image)

.PHONY: bench
bench: venv controlplane runtime-venv ## Benchmark: latency vs the 4.0 CLI, 10/100/1000 clusters, steady state (bench-results/)
	$(PY) -m clusterop_dev.bench --operator-python $(RUNTIME_VENV)/bin/python $(BENCH_ARGS)
