"""A local Kubernetes control plane on loopback ports for tests, benchmarks and demos (envtest
style), in modules with one job each:

- `bed`: `TestBed`, what runs (etcd, kube-apiserver, kube-controller-manager), flags and order;
- `certs`: the CA, serving and admin certificates and kubeconfigs (the `openssl` command);
- `processes`: children without orphans, free loopback ports, live-pid checks;
- `readiness`: when the apiserver answers;
- `access`: clients and tokens for the test bed or an `ExistingCluster` (kind, $KUBECONFIG);
- `binaries`: where etcd and kube-apiserver come from (hack/controlplane or KUBEBUILDER_ASSETS);
- `cli`: `python -m clusterop_dev.testbed up|down|status|run`, and `serve`.

Must not: read or write any kubeconfig it did not write itself (never ~/.kube/config), or import
the kubernetes client at module level (the CLI works without it).
"""

from clusterop_dev.testbed.access import ExistingCluster, get_json, local_mode
from clusterop_dev.testbed.bed import ADMIN_USER, DEFAULT_AUDIT_RESOURCES, WRITE_VERBS, TestBed
from clusterop_dev.testbed.binaries import control_plane_binaries, control_plane_version
from clusterop_dev.testbed.cli import serve
from clusterop_dev.testbed.common import REPO_ROOT, TestBedError

# What the pytest fixture hands out: the local test bed, or the cluster E2E_CLUSTER names.
Cluster = TestBed | ExistingCluster

__all__ = [
    "ADMIN_USER",
    "DEFAULT_AUDIT_RESOURCES",
    "REPO_ROOT",
    "WRITE_VERBS",
    "Cluster",
    "ExistingCluster",
    "TestBed",
    "TestBedError",
    "control_plane_binaries",
    "control_plane_version",
    "get_json",
    "local_mode",
    "serve",
]
