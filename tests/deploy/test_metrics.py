"""What the Deployment's probes and Prometheus scrape: the metrics endpoint and kopf's liveness
endpoint of a running operator process, after a cluster became Ready."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes.client import ApiClient
from prometheus_client.parser import text_string_to_metric_families

from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster, node_specs
from clusterop_dev.testbed import Cluster
from clusterop_dev.testkit import free_ports, wait_for

pytestmark = pytest.mark.e2e


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = requests.get(url, timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_and_liveness_of_a_running_operator(
    testbed: Cluster,
    kube_api: ApiClient,
    namespace: str,
    crd: None,
    machines: Callable[[int], list[dict[str, Any]]],
    tmp_path: Path,
):
    if testbed.kind:
        pytest.skip("kind: the operator runs in-cluster, this test drives a local operator process")
    metrics_port, liveness_port = free_ports(2)
    clusters = Clusters(kube_api, namespace)
    clusters.put_credentials()
    clusters.put_key()
    op = OperatorProcess(
        testbed.kubeconfig,
        [namespace],
        resync_seconds=2.0,
        log_path=tmp_path / "operator.log",
        extra_args=[
            "--metrics-port", str(metrics_port), "--metrics-addr", "127.0.0.1",
            "--liveness", f"http://127.0.0.1:{liveness_port}/healthz",
        ],
    )  # fmt: skip
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    with op:
        clusters.create(manager_cluster("metered", node_specs(machines(3))))
        clusters.wait_ready("metered", timeout=60)
        ready_key = ("clusterop_cluster_ready", frozenset({("namespace", namespace), ("name", "metered")}))
        samples = wait_for(
            lambda: (s := _samples(metrics_url)).get(ready_key) == 1.0 and s,
            timeout=30,
            message="clusterop_cluster_ready to be 1",
        )
        liveness = requests.get(f"http://127.0.0.1:{liveness_port}/healthz", timeout=10)
    assert samples[("clusterop_reconcile_total", frozenset({("result", "ok")}))] >= 1
    requests_seen = {
        dict(labels)["endpoint"]
        for (name, labels), value in samples.items()
        if name == "clusterop_manager_request_duration_seconds_count" and value > 0
    }
    assert requests_seen, "no manager request was timed"
    assert any(name == "clusterop_reconcile_duration_seconds_count" and v >= 1 for (name, _), v in samples.items())
    nodes_online = ("clusterop_cluster_nodes_online", frozenset({("namespace", namespace), ("name", "metered")}))
    assert samples[nodes_online] == 3.0
    assert liveness.status_code == 200, liveness.text
    assert "reconcile_age" in liveness.json()


def test_a_metrics_port_in_use_stops_the_operator_with_the_reason(testbed: Cluster, namespace: str, tmp_path: Path):
    """kopf retries a failed start-up every 60 s: a process whose metrics port was taken lived on
    without metrics and without ever starting its election (a shard nobody held). It exits."""
    if testbed.kind:
        pytest.skip("kind: the operator runs in-cluster, this test drives a local operator process")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))  # held by this test: no other process can take it
        taken.listen()
        port = taken.getsockname()[1]
        op = OperatorProcess(
            testbed.kubeconfig,
            [namespace],
            log_path=tmp_path / "operator.log",
            extra_args=["--metrics-port", str(port), "--metrics-addr", "127.0.0.1", "--leader-elect",
                        "--leader-elect-lease-namespace", namespace],
        )  # fmt: skip
        op.start()
        try:
            wait_for(lambda: not op.alive, timeout=30, message="the operator to exit")
        finally:
            op.stop()
    assert op.proc is not None and op.proc.returncode not in (0, None)
    assert "cannot serve metrics" in op.log_text() and "Address already in use" in op.log_text()
