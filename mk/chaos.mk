# Chaos suite (issue 8): crash trials, manager faults, Kubernetes faults, bad input, secret scans.
# `make test` runs it short (CHAOS_TRIALS=10); `make chaos` is the full run. Replay: CHAOS_SEED=<n>.
CHAOS_TRIALS ?= 100
CHAOS_PARALLEL ?= 3
CHAOS_REPORT ?= chaos-report.json

.PHONY: chaos
chaos: venv controlplane ## Full chaos run: 100 crash trials + every fault scenario (CHAOS_SEED=<n> replays)
	CHAOS_TRIALS=$(CHAOS_TRIALS) CHAOS_PARALLEL=$(CHAOS_PARALLEL) CHAOS_REPORT=$(CHAOS_REPORT) \
		$(VENV)/bin/pytest -m chaos tests/chaos -s -p no:cacheprovider $(PYTEST_ARGS)
