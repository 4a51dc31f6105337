"""Prometheus metrics. Labels never carry a secret: namespaces, names, endpoint kinds (cluster,
nodes, node), HTTP methods and status codes only.

The process-wide metrics are prometheus_client's. The per-cluster gauges (three series per
ManagerCluster) are `CLUSTERS`: each cluster's lines are rendered when its values change, and a
scrape joins them. prometheus_client renders every sample on every scrape, which at 1,000
clusters was 18% of the operator's CPU at rest, and at 10,000 per process took longer than
Prometheus's default 10 s scrape timeout while the process was busy.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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
LEASE_REQUESTS = Counter("clusterop_leader_lease_requests_total", "Requests about the leader-election Lease", ["verb"])
LEADING = Gauge("clusterop_leader", "1 while this process holds the leader-election Lease")


class ClusterGauges:
    """The per-cluster gauges, labelled `namespace` and `name`: one line per gauge and cluster,
    rendered by `set` when a value changes (a steady cluster renders nothing), joined by `render`."""

    FAMILIES = (
        ("clusterop_cluster_ready", "1 when the ManagerCluster is Ready"),
        ("clusterop_cluster_nodes_online", "Members online in the master's node list"),
        ("clusterop_cluster_nodes_desired", "Nodes in spec.nodes"),
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], tuple[tuple[float, ...], tuple[str, ...]]] = {}
        self._heads = tuple(f"# HELP {n} {h}\n# TYPE {n} gauge\n" for n, h in self.FAMILIES)

    def set(self, namespace: str, name: str, *, ready: bool, online: int, desired: int) -> None:
        values = (1.0 if ready else 0.0, float(online), float(desired))
        key = (namespace, name)
        row = self._rows.get(key)
        if row is not None and row[0] == values:
            return
        labels = f'{{namespace="{_escape(namespace)}",name="{_escape(name)}"}}'
        lines = tuple(f"{n}{labels} {v!r}\n" for (n, _), v in zip(self.FAMILIES, values, strict=True))
        with self._lock:
            self._rows[key] = (values, lines)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._rows.pop((namespace, name), None)

    def render(self) -> bytes:
        with self._lock:
            rows = [lines for _, lines in self._rows.values()]
        return "".join(_families(self._heads, rows)).encode()


def _families(heads: tuple[str, ...], rows: list[tuple[str, ...]]) -> Iterable[str]:
    for i, head in enumerate(heads):
        yield head
        yield "".join(lines[i] for lines in rows)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


CLUSTERS = ClusterGauges()


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    MANAGER_REQUESTS.labels(endpoint, method, str(status)).observe(seconds)


def forget(namespace: str, name: str) -> None:
    CLUSTERS.forget(namespace, name)


def exposition() -> bytes:
    """Everything a scrape gets: prometheus_client's registry, then the per-cluster gauges."""
    return generate_latest(REGISTRY) + CLUSTERS.render()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        payload = exposition()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not logged (one every 15-30 s per Prometheus)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """The metrics endpoint on every path, in a daemon thread (as prometheus_client's own)."""
    family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]
    server = type("_Bound", (_Server,), {"address_family": family})((addr, port), _Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
