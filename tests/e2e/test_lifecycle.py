"""The operator's contract, end to end: real apiserver, simulator over HTTP, operator process.

Every outcome is judged from the simulator's side (its clusters and request log) as well as
from the resource's status.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from cloudify_manager_sim.harness import SimulatorControl as SimulatorProcess
from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster, node_specs
from clusterop_dev.testkit import wait_for

pytestmark = pytest.mark.e2e
Machines = Callable[[int], list[dict[str, Any]]]
WRITES = ("PUT", "PATCH", "DELETE")


def sim_clusters_of(sim: SimulatorProcess, machines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ips = {m["host_ip"] for m in machines}
    return [c for c in sim.clusters() if ips & {m["host_ip"] for m in c["members"]}]


def writes_to(sim: SimulatorProcess, machines: list[dict[str, Any]]) -> int:
    ips = {m["host_ip"] for m in machines}
    return sum(c["count"] for c in sim.requests_log()["counts"] if c["host_ip"] in ips and c["method"] in WRITES)


def requests_to(sim: SimulatorProcess, machines: list[dict[str, Any]]) -> int:
    ips = {m["host_ip"] for m in machines}
    return sum(c["count"] for c in sim.requests_log()["counts"] if c["host_ip"] in ips)


def live_members(sim: SimulatorProcess, machines: list[dict[str, Any]]) -> set[str]:
    (cluster,) = sim_clusters_of(sim, machines)
    return {m["name"] for m in cluster["members"] if not m["removed"]}


def test_bootstrap_of_three(sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess):
    ms = machines(3)
    clusters.create(manager_cluster("trio", node_specs(ms), config={"heartbeat": 15}))
    st = clusters.wait_ready("trio", timeout=30)
    assert st["phase"] == "Ready"
    assert st["leader"] == "manager-1"
    assert st["nodeSummary"] == "3/3"
    assert [n["master"] for n in st["nodes"]].count(True) == 1
    assert all(n["online"] and n["initialized"] for n in st["nodes"])
    (cluster,) = sim_clusters_of(sim, ms)
    assert cluster["bootstraps"] == 1
    assert cluster["settings"] == {"heartbeat": 15}
    assert {m["name"] for m in cluster["members"]} == {"manager-1", "manager-2", "manager-3"}
    reasons = clusters.wait_reasons("trio", "Bootstrapping", "Joining", "ConfigApplied", "Ready")
    assert reasons.count("Bootstrapping") == 1 and reasons.count("Joining") == 2
    assert "ConfigApplied" in reasons and "Ready" in reasons
    assert any(line["message"] == "HA Cluster configuration complete" for line in st["logs"])


def test_scale_up_then_down_including_the_master(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
):
    ms = machines(5)
    nodes = node_specs(ms)
    clusters.create(manager_cluster("scale", nodes[:3]))
    clusters.wait_ready("scale")
    clusters.set_nodes("scale", nodes)
    st = clusters.wait_ready("scale")
    assert st["nodeSummary"] == "5/5"
    assert live_members(sim, ms) == {n["name"] for n in nodes}
    # Drop the master (manager-1) and manager-2: replicas first, the master last.
    clusters.set_nodes("scale", nodes[2:])
    st = clusters.wait_ready("scale", timeout=40)
    assert live_members(sim, ms) == {"manager-3", "manager-4", "manager-5"}
    assert st["leader"] in {"manager-3", "manager-4", "manager-5"}
    assert [n["name"] for n in st["nodes"]] == ["manager-3", "manager-4", "manager-5"]
    # Replicas first, the master last: judged by the order the simulator removed them in.
    removed = {m["name"]: m["removed_seq"] for m in sim_clusters_of(sim, ms)[0]["members"] if m["removed"]}
    assert set(removed) == {"manager-1", "manager-2"}, removed
    assert removed["manager-2"] < removed["manager-1"], f"the master was removed before the replica: {removed}"
    events = clusters.wait_events("scale", lambda es: sum(e["reason"] == "Removing" for e in es) >= 2)
    removals = sorted(str(e["message"]) for e in events if e["reason"] == "Removing")
    assert len(removals) == 2 and "Removed manager-1 " in removals[0] and "Removed manager-2 " in removals[1], removals
    assert sim_clusters_of(sim, ms)[0]["bootstraps"] == 1


def test_config_change_is_patched_once(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
):
    ms = machines(2)
    clusters.create(manager_cluster("conf", node_specs(ms), config={"a": 1}))
    first = clusters.wait_ready("conf")

    def patches_sent() -> int:
        counts = sim.requests_log()["counts"]
        return sum(c["count"] for c in counts if c["method"] == "PATCH" and c["host_ip"] == ms[0]["host_ip"])

    assert patches_sent() == 1  # the first config, once
    clusters.patch("conf", {"spec": {"config": {"a": 2, "nested": {"b": [1, 2]}}}})
    st = clusters.wait_status("conf", lambda s: s.get("appliedConfigHash") != first["appliedConfigHash"])
    clusters.wait_ready("conf")
    (cluster,) = sim_clusters_of(sim, ms)
    assert cluster["settings"] == {"a": 2, "nested": {"b": [1, 2]}}
    assert patches_sent() == 2  # and the change, once
    assert st["appliedConfigHash"]


def test_failover_is_mirrored(sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess):
    ms = machines(3)
    clusters.create(manager_cluster("fo", node_specs(ms)))
    clusters.wait_ready("fo")
    sim.offline(ms[0]["host_ip"])
    st = clusters.wait_status("fo", lambda s: s.get("leader") not in (None, "manager-1"), timeout=30)
    degraded = clusters.condition("fo", "Degraded")
    assert degraded is not None and degraded["status"] == "True"
    assert "manager-1" in degraded["message"]
    node1 = next(n for n in st["nodes"] if n["name"] == "manager-1")
    assert node1["online"] is False
    sim.online(ms[0]["host_ip"])
    st = clusters.wait_ready("fo", timeout=30)
    assert st["leader"] != "manager-1"
    assert writes_to(sim, ms) == 3  # one start and two joins: failover needed no write


def test_sigkill_after_bootstrap_put_bootstraps_once(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, local_operator: OperatorProcess
):
    operator = local_operator
    ms = machines(3)
    operator.stop()
    operator.env["CLUSTEROP_FAILPOINTS"] = "after-write=kill"
    operator.start()
    clusters.create(manager_cluster("crash", node_specs(ms)))
    wait_for(lambda: not operator.alive, timeout=20, message="the failpoint to kill the operator")
    assert operator.proc is not None and operator.proc.returncode == -9
    # The PUT landed, and the status write after it never happened.
    assert (
        sum(
            c["count"]
            for c in sim.requests_log()["counts"]
            if c["method"] == "PUT" and c["host_ip"] == ms[0]["host_ip"]
        )
        == 1
    )
    assert clusters.status("crash").get("pending", {}).get("op") == "bootstrap"
    operator.env.pop("CLUSTEROP_FAILPOINTS")
    operator.start()
    clusters.wait_ready("crash", timeout=30)
    (cluster,) = sim_clusters_of(sim, ms)
    assert cluster["bootstraps"] == 1
    assert live_members(sim, ms) == {"manager-1", "manager-2", "manager-3"}


def test_unreachable_node_blocks_bootstrap_until_it_answers(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
):
    ms = machines(3)
    sim.offline(ms[2]["host_ip"])
    clusters.create(manager_cluster("unreach", node_specs(ms)))
    st = clusters.wait_status("unreach", lambda s: s.get("phase") == "Degraded", timeout=20)
    assert "manager-3" in st["error"]
    degraded = clusters.condition("unreach", "Degraded")
    assert degraded is not None and degraded["reason"] == "NodeUnreachable"
    assert writes_to(sim, ms) == 0  # it may already belong to a cluster: no bootstrap
    sim.online(ms[2]["host_ip"])
    clusters.wait_ready("unreach", timeout=30)
    assert sim_clusters_of(sim, ms)[0]["bootstraps"] == 1


def test_wrong_password_is_reported_and_nothing_written(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
):
    ms = machines(2)
    clusters.put_credentials("bad-admin", "admin", "not-the-password")
    clusters.create(manager_cluster("badpw", node_specs(ms), credentials_secret="bad-admin"))
    st = clusters.wait_status("badpw", lambda s: s.get("phase") == "Degraded", timeout=20)
    degraded = clusters.condition("badpw", "Degraded")
    assert degraded is not None and degraded["reason"] == "CredentialsRejected"
    assert "bad-admin" in st["error"]
    assert writes_to(sim, ms) == 0
    assert "not-the-password" not in operator.log_text()
    clusters.put_credentials("bad-admin", "admin", "admin")  # fixed: the operator recovers by itself
    clusters.wait_ready("badpw", timeout=30)


@pytest.mark.parametrize(
    "key", ["not base64!", base64.b64encode(b"fifteen bytes!!").decode(), base64.b64encode(b"x" * 17).decode()]
)
def test_malformed_key_makes_no_manager_call(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess, key: str
):
    ms = machines(2)
    clusters.put_key("odd-key", key)
    clusters.create(manager_cluster("badkey", node_specs(ms), key_secret="odd-key"))
    st = clusters.wait_status("badkey", lambda s: s.get("phase") == "Invalid", timeout=20)
    assert st["conditions"][0]["reason"] == "EncryptionKeyInvalid"
    assert "base64 of exactly 16 bytes" in st["error"]
    assert requests_to(sim, ms) == 0
    assert key not in operator.log_text()
    clusters.wait_reasons("badkey", "EncryptionKeyInvalid")


def test_missing_secret_waits_and_names_it(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
):
    ms = machines(2)
    clusters.create(manager_cluster("nokey", node_specs(ms), key_secret="later-key"))
    st = clusters.wait_status("nokey", lambda s: s.get("phase") == "Pending", timeout=20)
    assert "later-key" in st["error"] and st["conditions"][0]["reason"] == "SecretMissing"
    assert requests_to(sim, ms) == 0
    clusters.put_key("later-key")
    clusters.wait_ready("nokey", timeout=30)


def test_generated_key(sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess):
    ms = machines(2)
    clusters.create(manager_cluster("genkey", node_specs(ms), key_secret="made-key", generate_key=True))
    clusters.wait_ready("genkey")
    secret = clusters.core.read_namespaced_secret("made-key", clusters.ns)
    raw = base64.b64decode(base64.b64decode(secret.data["encryptionKey"]))
    assert len(raw) == 16
    assert sim_clusters_of(sim, ms)[0]["key_set"] is True


def test_paused_observes_and_changes_nothing(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
):
    ms = machines(2)
    clusters.create(manager_cluster("paused", node_specs(ms), paused=True))
    st = clusters.wait_status("paused", lambda s: s.get("phase") == "Paused", timeout=20)
    assert st["plannedActions"] == ["paused, would bootstrap the cluster on manager-1"]
    progressing = clusters.condition("paused", "Progressing")
    assert progressing is not None and progressing["reason"] == "Paused"
    assert writes_to(sim, ms) == 0
    assert requests_to(sim, ms) > 0  # it did observe
    clusters.set_paused("paused", False)
    clusters.wait_ready("paused", timeout=30)


def test_delete_orphan_leaves_managers_alone(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
):
    ms = machines(3)
    clusters.create(manager_cluster("orphan", node_specs(ms)))
    clusters.wait_ready("orphan")
    before = writes_to(sim, ms)
    clusters.delete("orphan")
    wait_for(lambda: not clusters.exists("orphan"), timeout=20, message="the resource to go")
    assert writes_to(sim, ms) == before
    assert live_members(sim, ms) == {"manager-1", "manager-2", "manager-3"}


def test_delete_remove_nodes_keeps_only_the_last(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
):
    ms = machines(3)
    clusters.create(manager_cluster("dissolve", node_specs(ms), deletion_policy="RemoveNodes"))
    st = clusters.wait_ready("dissolve")
    clusters.delete("dissolve")
    wait_for(lambda: not clusters.exists("dissolve"), timeout=30, message="the resource to go")
    assert live_members(sim, ms) == {st["leader"]}  # never the last node


@pytest.mark.parametrize("policy", ["Orphan", "RemoveNodes"])
def test_delete_while_the_operator_is_down(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, local_operator: OperatorProcess, policy: str
):
    """The finalizer holds the object while no operator runs; the next operator finishes the job."""
    ms = machines(3)
    clusters.create(manager_cluster("later", node_specs(ms), deletion_policy=policy))
    st = clusters.wait_ready("later")
    local_operator.stop()
    clusters.delete("later")
    assert clusters.exists("later"), "the finalizer must hold the object while no operator runs"
    assert live_members(sim, ms) == {"manager-1", "manager-2", "manager-3"}
    local_operator.start()
    wait_for(lambda: not clusters.exists("later"), timeout=30, message="the resource to go")
    expected = {st["leader"]} if policy == "RemoveNodes" else {"manager-1", "manager-2", "manager-3"}
    assert live_members(sim, ms) == expected


def test_deletion_policy_changed_at_run_time(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
):
    ms = machines(2)
    clusters.create(manager_cluster("switch", node_specs(ms)))
    st = clusters.wait_ready("switch")
    clusters.patch("switch", {"spec": {"deletionPolicy": "RemoveNodes"}})
    clusters.wait_status("switch", lambda s: s.get("observedGeneration") == 2, timeout=20)
    clusters.delete("switch")
    wait_for(lambda: not clusters.exists("switch"), timeout=30, message="the resource to go")
    assert live_members(sim, ms) == {st["leader"]}


def test_node_removed_outside_cannot_rejoin(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
):
    ms = machines(3)
    clusters.create(manager_cluster("outside", node_specs(ms)))
    clusters.wait_ready("outside")
    writes = writes_to(sim, ms)
    sim.remove(ms[2]["host_ip"])
    st = clusters.wait_status("outside", lambda s: "can never rejoin" in (s.get("error") or ""), timeout=20)
    degraded = clusters.condition("outside", "Degraded")
    assert degraded is not None and degraded["status"] == "True"
    assert degraded["reason"] == "CannotRejoin", degraded
    clusters.wait_reasons("outside", "CannotRejoin")
    node3 = next(n for n in st["nodes"] if n["name"] == "manager-3")
    assert node3["state"] == "Removed"
    assert writes_to(sim, ms) == writes  # no rejoin attempted


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([{"name": "a", "hostIP": "not-an-ip", "endpoint": "http://127.0.0.1:1"}], "hostIP must be an IP address"),
        (
            [
                {"name": "a", "hostIP": "127.1.0.1", "endpoint": "http://127.0.0.1:1"},
                {"name": "b", "hostIP": "127.1.0.1", "endpoint": "http://127.0.0.1:2"},
            ],
            "every node needs its own hostIP",
        ),
        ([{"name": "a", "hostIP": "127.1.0.1", "endpoint": "ftp://127.0.0.1:1"}], "endpoint must be an http(s) URL"),
        (
            [{"name": "a", "hostIP": "127.1.0.1", "endpoint": "http://u:p@127.0.0.1:1"}],
            "endpoint must not carry credentials",
        ),
        ([], "should have at least 1 items"),
    ],
)
def test_invalid_specs_are_refused_at_apply(clusters: Clusters, nodes: list[dict[str, str]], message: str):
    with pytest.raises(ApiException) as refused:
        clusters.create(manager_cluster("bad", nodes))
    assert refused.value.status == 422
    assert message in str(refused.value.body)


def test_status_subresource_and_no_spec_writes(machines: Machines, clusters: Clusters, operator: OperatorProcess):
    ms = machines(1)
    created = clusters.create(manager_cluster("solo", node_specs(ms)))
    clusters.wait_ready("solo")
    obj = clusters.get("solo")
    assert obj["spec"] == created["spec"]
    assert obj["metadata"]["generation"] == created["metadata"]["generation"] == 1
    annotations = obj["metadata"].get("annotations") or {}
    assert not any(clusters.key in v for v in annotations.values())  # type: ignore[attr-defined]
