# A local cluster with one real node (docs/node.md): the control plane and containerd, kubelet,
# kube-scheduler, kube-proxy and CoreDNS in network namespaces of their own. Needs root and docker.

.PHONY: node-binaries
node-binaries: controlplane ## Build (or reuse) kubelet, kube-scheduler, kube-proxy, CoreDNS, pause and the CNI plugins
	@hack/node/build.sh >/dev/null

.PHONY: cluster-up
cluster-up: venv node-binaries ## Start the control plane and one real node in the background (.testbed/kubeconfig)
	@$(PY) -m clusterop_dev.node up --dir .testbed
	@echo "Use it: export KUBECONFIG=$(CURDIR)/.testbed/kubeconfig; kubectl get nodes"

.PHONY: cluster-down
cluster-down: ## Stop what cluster-up started and remove every process, mount, cgroup and namespace it made
	@$(PY) -m clusterop_dev.node down --dir .testbed

.PHONY: cluster-status
cluster-status: ## Say whether the local cluster runs; list its node
	@$(PY) -m clusterop_dev.node status --dir .testbed

.PHONY: e2e-node
e2e-node: venv node-binaries ## tests/e2e and tests/node against the operator and simulator as pods on the local node
	@PY=$(PY) PYTEST_ARGS="$(PYTEST_ARGS)" hack/node/e2e.sh
