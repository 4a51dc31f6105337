# Shipping: the Helm chart, deploy/ (kustomize), the container image, and the kind e2e path.
# Tools are built from the Go module proxy into $(TOOLS_BIN) once and reused.

TOOLS_BIN ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/cloudify-cluster-operator/bin
HELM_VERSION ?= v3.22.0
KIND_VERSION ?= v0.33.0
HELM ?= $(TOOLS_BIN)/helm
KIND ?= $(shell command -v kind 2>/dev/null || echo $(TOOLS_BIN)/kind)
IMAGE ?= cloudify-cluster-operator:dev
CHART := charts/cloudify-cluster-operator
# What `go install` of helm leaves out: its version and the Kubernetes version it assumes offline.
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
  -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37 \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37

.PHONY: helm
helm: ## Build helm v3.22.0 into the tools cache (skipped when present); tests/deploy need it
	@if [ -x "$(HELM)" ] && "$(HELM)" version --short 2>/dev/null | grep -q '^$(HELM_VERSION)'; then \
	  echo "$(HELM) ($(HELM_VERSION)) present"; \
	else \
	  echo "Building helm $(HELM_VERSION) into $(TOOLS_BIN) (about a minute) ..."; \
	  mkdir -p "$(dir $(HELM))" && GOBIN="$(abspath $(dir $(HELM)))" CGO_ENABLED=0 go install -trimpath \
	    -ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); \
	fi

.PHONY: kind
kind: ## Install kind v0.33.0 into the tools cache unless one is on PATH
	@if command -v kind >/dev/null 2>&1 || [ -x "$(TOOLS_BIN)/kind" ]; then echo "kind present: $(KIND)"; \
	else mkdir -p "$(TOOLS_BIN)" && GOBIN="$(TOOLS_BIN)" CGO_ENABLED=0 go install sigs.k8s.io/kind@$(KIND_VERSION); fi

.PHONY: manifests
manifests: venv ## Copy crds/ (the one CRD source) into the chart and deploy/crd; regenerate deploy/argocd/argocd-cm.yaml
	cp crds/cloudify.co_managerclusters.yaml $(CHART)/crds/cloudify.co_managerclusters.yaml
	cp crds/cloudify.co_managerclusters.yaml deploy/crd/cloudify.co_managerclusters.yaml
	$(PY) tests/deploy/deploytools.py

.PHONY: helm-lint
helm-lint: helm ## helm lint the chart (all-namespaces and namespaced values)
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set 'watchNamespaces={cloudify}'

.PHONY: deploy-check
deploy-check: venv helm controlplane ## Tests of deploy/, the chart, RBAC, Dockerfile and Argo CD Lua (tests/deploy)
	$(VENV)/bin/pytest tests/deploy -m 'not kind' $(PYTEST_ARGS)

# The base the Dockerfile builds on: made locally from Debian's packages by hack/image/base.sh;
# BASE_IMAGE=debian:bookworm-slim uses the registry's instead (the Dockerfile's own default).
BASE_IMAGE ?= cloudify-cluster-operator/debian:bookworm-slim-local

.PHONY: image
image: venv ## Build the operator's image (IMAGE=cloudify-cluster-operator:dev) offline; load it into a running node
	DIST=operator BASE_IMAGE="$(BASE_IMAGE)" PY="$(PY)" hack/image/build.sh $(IMAGE)
	@if [ -x hack/node/load-image.sh ]; then hack/node/load-image.sh $(IMAGE); fi

SIM_IMAGE ?= cloudify-manager-sim:dev

.PHONY: sim-image
sim-image: venv ## Build the simulator's image (SIM_IMAGE=cloudify-manager-sim:dev) offline; load it into a running node
	DIST=simulator BASE_IMAGE="$(BASE_IMAGE)" PY="$(PY)" hack/image/build.sh $(SIM_IMAGE)
	@if [ -x hack/node/load-image.sh ]; then hack/node/load-image.sh $(SIM_IMAGE); fi

.PHONY: e2e-kind
e2e-kind: venv kind ## kind cluster (Kubernetes 1.37), image, simulator + operator in-cluster, tests/e2e; then delete it
	KIND="$(KIND)" IMAGE="$(IMAGE)" PY="$(PY)" PYTEST_ARGS="$(PYTEST_ARGS)" hack/kind/e2e.sh
