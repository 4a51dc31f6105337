"""A real Prometheus on loopback scrapes a running operator and evaluates the shipped rules:
ManagerClusterNodesOffline fires when a manager goes offline and resolves when it returns.

The rules are the shipped expressions; only `for:` is shortened (to FOR) in the test's copy, and
Prometheus scrapes and evaluates every second, so the test runs in seconds, not minutes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes.client import ApiClient

from cloudify_manager_sim.harness import SimulatorProcess, stop_process
from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster, node_specs
from clusterop_dev.testbed import Cluster
from clusterop_dev.testkit import free_port, wait_for

from .test_rules import dashboard_queries
from .tools import ALERTS, tool

pytestmark = pytest.mark.e2e
FOR = "3s"
JOB = "cloudify-cluster-operator"


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(Prometheus URL, the port it scrapes the operator on)."""
    target = free_port()
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = FOR
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    web = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            str(tool("prometheus")),
            "--config.file=prometheus.yml",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{web}",
            "--log.level=warn",
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    url = f"http://127.0.0.1:{web}"
    try:
        wait_for(lambda: _ready(url), timeout=60, interval=0.2, message="Prometheus to be ready")
        yield url, target
    finally:
        stop_process(proc)


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _alerts(url: str, name: str) -> list[dict[str, Any]]:
    body = requests.get(f"{url}/api/v1/alerts", timeout=5).json()
    return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == name]


def _query(url: str, q: str) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(f"{url}/api/v1/query", params={"query": q}, timeout=5).json()
    return body


def test_an_alert_fires_when_a_manager_goes_offline_and_resolves_when_it_returns(
    testbed: Cluster, kube_api: ApiClient, namespace: str, crd: None, prometheus: tuple[str, int], tmp_path: Path
) -> None:
    if testbed.kind:
        pytest.skip("kind: the operator runs in-cluster, this test drives a local operator process")
    url, port = prometheus
    clusters = Clusters(kube_api, namespace)
    clusters.put_credentials()
    clusters.put_key()
    with (
        SimulatorProcess(machines=0, start_delay=0.3, join_delay=0.3, failover_delay=1.0) as sim,
        OperatorProcess(
            testbed.kubeconfig,
            [namespace],
            resync_seconds=1.0,
            log_path=tmp_path / "operator.log",
            extra_args=["--metrics-port", str(port), "--metrics-addr", "127.0.0.1"],
        ),
    ):
        machines = sim.add_machines(2)
        clusters.create(manager_cluster("watched", node_specs(machines)))
        st = clusters.wait_ready("watched", timeout=60)
        series = f'clusterop_cluster_nodes_online{{namespace="{namespace}",name="watched"}}'
        wait_for(
            lambda: [r for r in _query(url, f"{series} == 2")["data"]["result"]],
            timeout=60,
            message="Prometheus to scrape 2 nodes online",
        )
        # Pending while the cluster formed (1 of 2 online); gone once Prometheus saw it whole.
        wait_for(lambda: not _alerts(url, "ManagerClusterNodesOffline"), timeout=30, message="no alert when formed")
        # Prometheus started before the operator, so ClusterOperatorDown may have fired: scraped, it resolves.
        wait_for(lambda: not _alerts(url, "ClusterOperatorDown"), timeout=30, message="ClusterOperatorDown to clear")
        for q in dashboard_queries():  # every dashboard query runs against the real server
            answer = _query(url, q)
            assert answer["status"] == "success", (q, answer)

        replica = next(n for n in st["nodes"] if not n["master"])
        host = next(m["host_ip"] for m in machines if m["endpoint"] == replica["endpoint"])
        offline_at = time.monotonic()
        sim.offline(host)

        def firing() -> list[dict[str, Any]]:
            return [a for a in _alerts(url, "ManagerClusterNodesOffline") if a["state"] == "firing"]

        alert = wait_for(firing, timeout=90, interval=0.2, message="ManagerClusterNodesOffline to fire")[0]
        fired = time.monotonic() - offline_at
        assert alert["labels"]["namespace"] == namespace and alert["labels"]["name"] == "watched"
        summary = f"ManagerCluster {namespace}/watched has fewer nodes online than desired"
        assert alert["annotations"]["summary"] == summary

        online_at = time.monotonic()
        sim.online(host)
        wait_for(
            lambda: not _alerts(url, "ManagerClusterNodesOffline"),
            timeout=90,
            interval=0.2,
            message="ManagerClusterNodesOffline to resolve",
        )
        resolved = time.monotonic() - online_at
        print(
            f"\nManagerClusterNodesOffline (for: {FOR}): fired {fired:.1f}s after the manager went offline, "
            f"resolved {resolved:.1f}s after it returned"
        )
        clusters.delete("watched")
        wait_for(lambda: not clusters.exists("watched"), timeout=30, message="watched to be deleted")
