"""Developer tooling for cloudify-cluster-operator: never imported by the operator itself.

`clusterop_dev.testbed` starts a local Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager) for tests, benchmarks and demos.
"""
