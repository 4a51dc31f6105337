"""Prometheus metrics (prometheus_client). Labels never carry a secret: namespaces, names,
endpoint kinds (cluster, nodes, node), HTTP methods and status codes only."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("clusterop_reconcile_total", "Reconcile passes", ["result"])
LAST_PASS = Gauge(
    "clusterop_last_reconcile_timestamp_seconds", "Unix time the last reconcile pass (of any object) finished"
)


class _PassDuration(Histogram):
    """The pass-duration histogram; each observation also stamps LAST_PASS (the stall alert's input)."""

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        super().observe(amount, exemplar)
        LAST_PASS.set_to_current_time()


RECONCILE_SECONDS = _PassDuration(
    "clusterop_reconcile_duration_seconds",
    "Duration of one reconcile pass",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECONCILE_ERRORS = Counter("clusterop_reconcile_errors_total", "Reconcile passes that raised")
MANAGER_REQUESTS = Histogram(
    "clusterop_manager_request_duration_seconds",
    "Manager REST requests by endpoint, method and HTTP status (0 = no answer)",
    ["endpoint", "method", "status"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CLUSTER_READY = Gauge("clusterop_cluster_ready", "1 when the ManagerCluster is Ready", ["namespace", "name"])
CLUSTER_NODES_ONLINE = Gauge(
    "clusterop_cluster_nodes_online", "Members online in the master's node list", ["namespace", "name"]
)
LEASE_REQUESTS = Counter("clusterop_leader_lease_requests_total", "Requests about the leader-election Lease", ["verb"])
LEADING = Gauge("clusterop_leader", "1 while this process holds the leader-election Lease")
CLUSTER_NODES_DESIRED = Gauge("clusterop_cluster_nodes_desired", "Nodes in spec.nodes", ["namespace", "name"])


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    MANAGER_REQUESTS.labels(endpoint, method, str(status)).observe(seconds)


def forget(namespace: str, name: str) -> None:
    for gauge in (CLUSTER_READY, CLUSTER_NODES_ONLINE, CLUSTER_NODES_DESIRED):
        try:
            gauge.remove(namespace, name)
        except KeyError:
            pass


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr)
