"""Fixtures of the plugin tests: one operator and one simulator for the module, and the
ManagerClusters the plugin is pointed at (formed, paused, Degraded), in a namespace of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster, node_specs
from clusterop_dev.testbed import Cluster

PLUGIN = Path(sys.executable).parent / "kubectl-mgrc"


@dataclass
class World:
    testbed: Cluster
    namespace: str
    clusters: Clusters
    sim: SimulatorProcess
    operator: OperatorProcess

    def run(self, *args: str, kubeconfig: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
        """The installed `kubectl-mgrc`, as a person runs it (output piped, so plain)."""
        env = {**os.environ, "KUBECONFIG": str(kubeconfig or self.testbed.kubeconfig)}
        return subprocess.run(
            [str(PLUGIN), *args, "-n", self.namespace], env=env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture(scope="module")
def world(
    testbed: Cluster, kube_api: ApiClient, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    if testbed.kind:
        pytest.skip("kind: these tests drive a local operator process and simulator")
    core = client.CoreV1Api(kube_api)
    ns = f"plugin-{os.getpid()}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    clusters = Clusters(kube_api, ns)
    clusters.put_credentials()
    clusters.put_key()
    log = tmp_path_factory.mktemp("plugin") / "operator.log"
    with (
        SimulatorProcess(machines=0, start_delay=0.3, join_delay=0.3, failover_delay=1.0) as sim,
        OperatorProcess(testbed.kubeconfig, [ns], resync_seconds=1.0, log_path=log) as op,
    ):
        yield World(testbed, ns, clusters, sim, op)
    core.delete_namespace(ns, propagation_policy="Background")


@pytest.fixture(scope="module")
def formed(world: World) -> str:
    """A 3-node cluster, Ready."""
    world.clusters.create(manager_cluster("formed", node_specs(world.sim.add_machines(3))))
    world.clusters.wait_ready("formed", timeout=60)
    return "formed"


@pytest.fixture(scope="module")
def paused(world: World) -> str:
    """A cluster created paused: the operator observes and would bootstrap, but sends nothing."""
    world.clusters.create(manager_cluster("paused", node_specs(world.sim.add_machines(2)), paused=True))
    world.clusters.wait_status(
        "paused", lambda st: st.get("phase") == "Paused" and bool(st.get("plannedActions")), timeout=60
    )
    return "paused"


@pytest.fixture(scope="module")
def degraded(world: World) -> str:
    """A 2-node cluster, formed, then a replica's machine set offline through the simulator."""
    machines = world.sim.add_machines(2)
    world.clusters.create(manager_cluster("degraded", node_specs(machines)))
    st = world.clusters.wait_ready("degraded", timeout=60)
    replica = next(n for n in st["nodes"] if not n["master"])
    world.sim.offline(next(m["host_ip"] for m in machines if m["endpoint"] == replica["endpoint"]))

    def is_degraded(st: dict[str, object]) -> bool:
        conds = {c["type"]: c["status"] for c in st.get("conditions") or []}  # type: ignore[attr-defined]
        return conds.get("Degraded") == "True" and conds.get("Ready") == "False"

    world.clusters.wait_status("degraded", is_degraded, timeout=60)
    return "degraded"
