# cloudify-cluster-operator: every target documents itself; run `make help`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The dev set-up: both distributions, editable (the operator with its test and dev extras, and the
# simulator from simulator/), and dev/ on the venv's path through a .pth file: the dev tooling
# (clusterop_dev: test bed, node, harness, demo, bench) is found by tests, make and every
# `python -m clusterop_dev.*` child process, and is never built into a wheel.
$(STAMP): pyproject.toml simulator/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ./simulator -e '.[dev]'
	@echo "$(CURDIR)/dev" >"$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/clusterop-dev.pth"
	@touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv: the operator (test and dev extras) and the simulator, editable; dev/ on its path

.PHONY: controlplane
controlplane: ## Build (or reuse) etcd, kube-apiserver, kube-controller-manager v1.37.2 into the cache
	@hack/controlplane/build.sh

.PHONY: controlplane-gomod
controlplane-gomod: ## Regenerate the control-plane wrapper go.mod from upstream's go.mod
	hack/controlplane/gen-gomod.sh

.PHONY: testbed-up
testbed-up: venv controlplane ## Start the local control plane in the background (.testbed/kubeconfig)
	@$(PY) -m clusterop_dev.testbed up --dir .testbed

.PHONY: testbed-down
testbed-down: ## Stop the local control plane started by testbed-up
	@$(PY) -m clusterop_dev.testbed down --dir .testbed

.PHONY: testbed-status
testbed-status: ## Say whether the local control plane runs and answers
	@$(PY) -m clusterop_dev.testbed status --dir .testbed

.PHONY: lint
lint: venv ## ruff (checks and formatting), mypy (strict) and the import layers (lint-imports, contracts in pyproject.toml)
	$(VENV)/bin/ruff check operator simulator dev tests hack
	$(VENV)/bin/ruff format --check operator simulator dev tests hack
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@# every test module imports (tests/argocd runs only inside e2e-node: a broken import shows here first)
	$(VENV)/bin/pytest -q --collect-only -p no:cacheprovider tests/argocd tests/e2e/node >/dev/null

.PHONY: unit
unit: venv ## Unit tests only (no control plane)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

.PHONY: test
test: venv controlplane ## The whole test suite: unit, simulator, control plane, e2e, then e2e-node with tests/argocd (CI runs this)
	$(VENV)/bin/pytest --ignore=tests/argocd $(PYTEST_ARGS)
	@NODE_SUITES="e2e argocd" $(MAKE) --no-print-directory e2e-node

.PHONY: run
run: venv ## Run the operator against the current kubeconfig (KUBECONFIG or in-cluster)
	$(VENV)/bin/cloudify-cluster-operator $(RUN_ARGS)

.PHONY: sim
sim: venv ## Run the manager simulator with 5 machines in the foreground
	$(VENV)/bin/cloudify-manager-sim --machines 5

.PHONY: demo
demo: venv controlplane ## The main job: control plane + 5 simulated managers + operator; form, scale 3->5->3, reconfigure
	$(PY) -m clusterop_dev.demo

# Targets of each area live beside it: mk/<area>.mk (ship, bench, chaos, ...).
-include mk/*.mk
