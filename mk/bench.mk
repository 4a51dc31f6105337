# The benchmark of issue 7: latency, scale, steady state and growth (docs/performance.md).
BENCH_ARGS ?=

.PHONY: bench
bench: venv controlplane ## Benchmark: latency vs the 4.0 CLI, 10/100/1000 clusters, steady state (bench-results/)
	$(PY) -m clusterop_dev.bench $(BENCH_ARGS)
