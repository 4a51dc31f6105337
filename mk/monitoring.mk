# Monitoring (issue 16): Prometheus and promtool from the Go module proxy, for the rule tests and the
# e2e test where a real Prometheus scrapes the operator. Built once into $(TOOLS_BIN), then reused.
PROMETHEUS_VERSION ?= v0.316.0
PROMETHEUS ?= $(TOOLS_BIN)/prometheus
PROMTOOL ?= $(TOOLS_BIN)/promtool
# Static and file discovery are all the tests use: remove_all_sd leaves out the cloud SDKs (AWS, Azure,
# GCE, Kubernetes...), which cut a cold build from 37 to 8 minutes and its peak from 3.3 to 1 GB here.
PROMETHEUS_TAGS ?= remove_all_sd
PROMETHEUS_STAMP := $(PROMETHEUS_VERSION) tags=$(PROMETHEUS_TAGS)

.PHONY: prometheus
prometheus: ## Build prometheus + promtool (github.com/prometheus/prometheus $(PROMETHEUS_VERSION)) into the tools cache (skipped when present)
	@if [ -x "$(PROMETHEUS)" ] && [ -x "$(PROMTOOL)" ] && [ "$$(cat $(TOOLS_BIN)/.prometheus-version 2>/dev/null)" = "$(PROMETHEUS_STAMP)" ]; then \
	  echo "$(PROMETHEUS), $(PROMTOOL) ($(PROMETHEUS_VERSION)) present"; \
	else \
	  echo "Building prometheus and promtool $(PROMETHEUS_VERSION) into $(TOOLS_BIN) (several minutes) ..."; \
	  mkdir -p "$(TOOLS_BIN)" && GOBIN="$(abspath $(TOOLS_BIN))" CGO_ENABLED=0 go install -trimpath -tags '$(PROMETHEUS_TAGS)' -ldflags '-s -w' \
	    github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_VERSION) \
	    github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION) \
	  && echo "$(PROMETHEUS_STAMP)" > "$(TOOLS_BIN)/.prometheus-version"; \
	fi

.PHONY: monitoring-manifests
monitoring-manifests: venv ## Copy deploy/monitoring/{alerts.yaml,dashboard.json} into the chart; regenerate the PrometheusRule
	$(PY) hack/monitoring/generate.py

manifests: monitoring-manifests

.PHONY: monitoring-test
monitoring-test: venv prometheus ## promtool rule tests, dashboard checks, the Prometheus e2e test (tests/monitoring)
	$(VENV)/bin/pytest tests/monitoring $(PYTEST_ARGS)

# The rule and dashboard tests and the Prometheus e2e test run in `make test`.
test: prometheus

.PHONY: krew
krew: venv ## Build the krew archive of kubectl mgrc (dist/kubectl-mgrc.tar.gz, a python3 zipapp) and print its sha256
	PY=$(PY) deploy/krew/build.sh
