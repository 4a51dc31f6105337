# Argo CD (issue 13): the pinned Argo CD built from the Go module proxy (hack/argocd/versions.env
# pins it and its Go toolchain), its engine running our Lua, and an e2e suite where Argo CD's
# application-controller, repo-server and argocd-server sync the operator and a ManagerCluster.

.PHONY: argocd
argocd: ## Build Argo CD v3.6.1 into the tools cache (skipped when present); prints the argocd binary's path last
	@hack/argocd/build.sh

.PHONY: argocd-gomod
argocd-gomod: ## Regenerate the Argo CD wrapper go.mod from upstream's go.mod
	hack/argocd/gen-gomod.sh

# On the local node (hack/node/e2e.sh brings it up, builds and loads the image, runs the simulator
# pod) the operator is the Deployment Argo CD syncs; where no node can run, the script says so in
# one line and the suite runs on the plain control plane with the operator as a host process.
.PHONY: e2e-argocd
e2e-argocd: venv controlplane node-binaries argocd ## Argo CD syncs the operator (as pods on the local node) and a ManagerCluster from git (tests/argocd)
	@NODE_SUITES=argocd PY=$(PY) PYTEST_ARGS="$(PYTEST_ARGS)" hack/node/e2e.sh
# tests/deploy/test_argocd.py runs our Lua in the argocd binary: `make test` builds it first. The
# plain pytest run of `make test` leaves tests/argocd out: its e2e-node step runs it on the node.
test: argocd
