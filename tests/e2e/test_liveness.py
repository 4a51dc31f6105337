"""Liveness fails when reconcile passes stall (a manager that never answers holds a pass), not only
when the process is dead, and recovers once passes finish again."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from cloudify_manager_sim.harness import SimulatorControl
from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster, node_specs
from clusterop_dev.testbed import Cluster
from clusterop_dev.testkit import free_port, wait_for

pytestmark = pytest.mark.e2e


def healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_liveness_fails_while_passes_stall(
    testbed: Cluster, sim: SimulatorControl, clusters: Clusters, tmp_path: Path
) -> None:
    if testbed.kind:
        pytest.skip("kind: drives a local operator process with its own liveness port")
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    extra = ["--liveness", url, "--stall-seconds", "3", "--request-timeout", "12"]
    op = OperatorProcess(
        testbed.kubeconfig, [clusters.ns], resync_seconds=1.0, log_path=tmp_path / "op.log", extra_args=extra
    )
    # OperatorProcess disables liveness by default; the later --liveness wins in argparse.
    with op:
        ms = sim.add_machines(1)
        clusters.create(manager_cluster("stall", node_specs(ms)))
        clusters.wait_ready("stall")
        wait_for(lambda: healthy(url), timeout=20, message="liveness to answer 200")
        sim.faults(ms[0]["host_ip"], "hang", count=1, hang_seconds=10)
        wait_for(lambda: not healthy(url), timeout=15, message="liveness to fail while the pass hangs")
        wait_for(lambda: healthy(url), timeout=30, message="liveness to recover once the hang ends")
        assert op.alive
