"""What only a real node shows about the operator's pod: it is deleted mid-formation, restarted by
`kubectl rollout restart` and by its own liveness probe when passes stall, and its memory stays
under the limit the node enforces through a 100-cluster formation. Every outcome is judged from
the simulator's side (bootstraps, writes) as well as from the pod and the status."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from nodetools import DEPLOYMENT, OPERATOR_NS, container_cgroup, kubectl, read_int, restarts, the_leader_pod

from cloudify_manager_sim.harness import SimulatorControl
from clusterop_dev.harness import GROUP, PLURAL, VERSION, Clusters, manager_cluster, node_specs
from clusterop_dev.testkit import wait_for

pytestmark = pytest.mark.e2e
Machines = Callable[[int], list[dict[str, Any]]]
WRITES = ("PUT", "PATCH", "DELETE")


def formed(sim: SimulatorControl, machines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The simulator's clusters that hold any of these machines."""
    ips = {m["host_ip"] for m in machines}
    return [c for c in sim.clusters() if ips & {m["host_ip"] for m in c["members"]}]


def manager_writes(sim: SimulatorControl, machines: list[dict[str, Any]]) -> int:
    ips = {m["host_ip"] for m in machines}
    return sum(c["count"] for c in sim.requests_log()["counts"] if c["host_ip"] in ips and c["method"] in WRITES)


def replacement_of(core: client.CoreV1Api, old: Any, timeout: float = 180) -> Any:
    """The pod that leads after `old` was deleted or restarted (the standby replica, or a new pod)."""
    return the_leader_pod(core, timeout=timeout, other_than=old)


def pod_metrics(pod: Any) -> str:
    """The operator pod's own /metrics, read inside the pod (its image has python, not curl)."""
    read = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9090/metrics').read().decode())"
    return kubectl("-n", OPERATOR_NS, "exec", pod.metadata.name, "-c", "operator", "--", "python", "-c", read)


def test_pod_deleted_mid_formation_bootstraps_once(
    sim: SimulatorControl, machines: Machines, clusters: Clusters, core: client.CoreV1Api
) -> None:
    ms = machines(3)
    pod = the_leader_pod(core)
    sim.set_delays(join_delay=4.0)  # joins are slow: the pod dies between bootstrap and Ready
    try:
        clusters.create(manager_cluster("midway", node_specs(ms)))
        wait_for(lambda: formed(sim, ms), timeout=60, interval=0.1, message="the bootstrap on manager-1")
        assert not clusters.is_ready("midway")
        core.delete_namespaced_pod(pod.metadata.name, OPERATOR_NS, grace_period_seconds=0)
        replacement_of(core, pod)
        st = clusters.wait_ready("midway", timeout=120)
    finally:
        sim.set_delays(join_delay=0.3)
    assert st["nodeSummary"] == "3/3"
    (cluster,) = formed(sim, ms)
    assert cluster["bootstraps"] == 1
    assert {m["name"] for m in cluster["members"] if not m["removed"]} == {"manager-1", "manager-2", "manager-3"}


def test_rollout_restart_changes_nothing_on_the_managers(
    sim: SimulatorControl, machines: Machines, clusters: Clusters, core: client.CoreV1Api
) -> None:
    ms = machines(2)
    clusters.create(manager_cluster("steady", node_specs(ms)))
    clusters.wait_ready("steady", timeout=60)
    writes = manager_writes(sim, ms)
    old = the_leader_pod(core)
    kubectl("-n", OPERATOR_NS, "rollout", "restart", f"deployment/{DEPLOYMENT}")
    kubectl("-n", OPERATOR_NS, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=180s")
    new = replacement_of(core, old)
    assert new.metadata.name != old.metadata.name
    # The new leader has taken the cluster over: a pass of it has run, which its per-cluster gauge
    # shows (set after every pass; the old pods' gauges went with them).
    labels = {f'namespace="{clusters.ns}"', 'name="steady"'}

    def took_over() -> bool:
        return any(
            line.startswith("clusterop_cluster_ready{") and line.endswith("} 1.0")
            and labels <= set(line[line.index("{") + 1 : line.rindex("}")].split(","))
            for line in pod_metrics(new).splitlines()
        )  # fmt: skip

    wait_for(took_over, timeout=90, interval=1, message=f"clusterop_cluster_ready of steady on {new.metadata.name}")
    assert clusters.is_ready("steady")
    assert manager_writes(sim, ms) == writes
    assert formed(sim, ms)[0]["bootstraps"] == 1


def test_liveness_probe_restarts_a_stalled_operator(
    sim: SimulatorControl, machines: Machines, clusters: Clusters, core: client.CoreV1Api, restore_operator: None
) -> None:
    dep = json.loads(kubectl("-n", OPERATOR_NS, "get", "deployment", DEPLOYMENT, "-o", "json"))
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    patch = [
        {"op": "replace", "path": "/spec/template/spec/containers/0/args",
         "value": [*args, "--stall-seconds=3", "--request-timeout=12"]},
        {"op": "replace", "path": "/spec/template/spec/containers/0/livenessProbe/periodSeconds", "value": 2},
        {"op": "replace", "path": "/spec/template/spec/containers/0/livenessProbe/failureThreshold", "value": 2},
    ]  # fmt: skip
    old = the_leader_pod(core)
    kubectl("-n", OPERATOR_NS, "patch", "deployment", DEPLOYMENT, "--type=json", f"--patch={json.dumps(patch)}")
    kubectl("-n", OPERATOR_NS, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=180s")
    pod = replacement_of(core, old)
    ms = machines(1)
    clusters.create(manager_cluster("stall", node_specs(ms)))
    clusters.wait_ready("stall", timeout=60)
    assert restarts(pod) == 0
    sim.faults(ms[0]["host_ip"], "hang", count=1, hang_seconds=20)
    # kubelet's liveness probe fails while the pass hangs, and kubelet restarts the container.
    wait_for(
        lambda: restarts(core.read_namespaced_pod(pod.metadata.name, OPERATOR_NS)) > 0,
        timeout=90, interval=1, message="kubelet to restart the stalled operator",
    )  # fmt: skip
    events = core.list_namespaced_event(OPERATOR_NS, field_selector=f"involvedObject.name={pod.metadata.name}").items
    assert any(e.reason == "Unhealthy" and "Liveness" in (e.message or "") for e in events)
    clusters.wait_ready("stall", timeout=90)
    assert formed(sim, ms)[0]["bootstraps"] == 1


def test_memory_stays_under_the_limit_through_100_formations(
    sim: SimulatorControl, machines: Machines, clusters: Clusters, core: client.CoreV1Api
) -> None:
    pod = the_leader_pod(core)
    cgroup = container_cgroup(pod)
    limit = read_int(cgroup / "memory.limit_in_bytes")
    custom = client.CustomObjectsApi(core.api_client)
    ms = machines(100)
    began = time.monotonic()
    for i, machine in enumerate(ms):
        clusters.create(manager_cluster(f"c{i:03d}", node_specs([machine])))

    def all_ready() -> bool:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, clusters.ns, PLURAL)["items"]
        return len(items) == 100 and all(o.get("status", {}).get("phase") == "Ready" for o in items)

    wait_for(all_ready, timeout=600, interval=2, message="100 ManagerClusters Ready")
    peak = read_int(cgroup / "memory.max_usage_in_bytes")
    print(f"100 formations in {time.monotonic() - began:.0f}s; operator container memory peak "
          f"{peak / 2**20:.1f} MiB of a {limit / 2**20:.0f} MiB limit")  # fmt: skip
    assert peak < limit
    assert read_int(cgroup / "memory.failcnt") == 0  # never pushed against the limit
    assert restarts(core.read_namespaced_pod(pod.metadata.name, OPERATOR_NS)) == restarts(pod)
    assert sum(c["bootstraps"] for c in formed(sim, ms)) == 100
