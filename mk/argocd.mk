# Argo CD (issue 13): the pinned Argo CD built from the Go module proxy (hack/argocd/versions.env
# pins it and its Go toolchain), its engine running our Lua, and an e2e suite where Argo CD's
# application-controller, repo-server and argocd-server sync the operator and a ManagerCluster.

.PHONY: argocd
argocd: ## Build Argo CD v3.6.1 into the tools cache (skipped when present); prints the argocd binary's path last
	@hack/argocd/build.sh

.PHONY: argocd-gomod
argocd-gomod: ## Regenerate the Argo CD wrapper go.mod from upstream's go.mod
	hack/argocd/gen-gomod.sh

.PHONY: e2e-argocd
e2e-argocd: venv controlplane argocd ## Argo CD syncs the operator and a ManagerCluster from a git repository (tests/argocd)
	$(VENV)/bin/pytest tests/argocd -m argocd $(PYTEST_ARGS)
# tests/deploy/test_argocd.py runs our Lua in the argocd binary: `make test` builds it first.
test: argocd
