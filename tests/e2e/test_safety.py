"""Issue 14, end to end: status heals from any edit within a resync (and a right status costs no
write at rest), and spec.managementPolicies hold back exactly the writes they leave out (CEL
refuses nonsense). Judged from the simulator's side and from the status."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from cloudify_manager_sim.harness import SimulatorControl as SimulatorProcess
from clusterop_dev.harness import GROUP, PLURAL, VERSION, Clusters, OperatorProcess, manager_cluster, node_specs
from clusterop_dev.testkit import wait_for

pytestmark = pytest.mark.e2e
Machines = Callable[[int], list[dict[str, Any]]]
RESYNC = 2.0  # the e2e operator's --resync-seconds
HEAL_BOUND = RESYNC * 1.1 + 3.0  # one resync (with its jitter) plus a pass, on a busy machine


def writes(sim: SimulatorProcess, ms: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    ips = {m["host_ip"] for m in ms}
    return [(w["host_ip"], w["method"], w["path"]) for w in sim.writes_log() if w["host_ip"] in ips]


def sim_cluster(sim: SimulatorProcess, ms: list[dict[str, Any]]) -> dict[str, Any] | None:
    ips = {m["host_ip"] for m in ms}
    found = [c for c in sim.clusters() if ips & {m["host_ip"] for m in c["members"]}]
    assert len(found) <= 1, found
    return found[0] if found else None


def live(sim: SimulatorProcess, ms: list[dict[str, Any]]) -> set[str]:
    c = sim_cluster(sim, ms)
    return {m["name"] for m in c["members"] if not m["removed"]} if c else set()


def patch_status(clusters: Clusters, name: str, status: dict[str, Any] | None) -> dict[str, Any]:
    """Merge-patch status; returns the object as the apiserver stored it (before anyone heals it)."""
    return dict(
        clusters.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, clusters.ns, PLURAL, name, {"status": status}, _content_type="application/merge-patch+json"
        )
    )


def resource_version(clusters: Clusters, name: str) -> str:
    return str(clusters.get(name)["metadata"]["resourceVersion"])


def truthful(st: dict[str, Any], leader: str, n: int) -> bool:
    ready = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})
    return (
        st.get("phase") == "Ready"
        and st.get("leader") == leader
        and st.get("nodeSummary") == f"{n}/{n}"
        and ready.get("status") == "True"
        and len(st.get("nodes") or []) == n
        and all(x["online"] and x["member"] for x in st["nodes"])
    )


def test_cleared_status_is_rewritten_within_a_resync_without_touching_a_manager(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
) -> None:
    ms = machines(3)
    clusters.create(manager_cluster("heal", node_specs(ms)))
    st = clusters.wait_ready("heal")
    before = writes(sim, ms)
    # The PATCH's own answer shows the status cleared: a read after it may already see it healed.
    assert not patch_status(clusters, "heal", None).get("status")
    healed = clusters.wait_status(
        "heal", lambda s: truthful(s, st["leader"], 3), timeout=HEAL_BOUND, message="the cleared status to heal"
    )
    assert healed["observedGeneration"] == clusters.get("heal")["metadata"]["generation"]
    assert writes(sim, ms) == before, "healing status wrote to a manager"


def test_status_edited_to_lie_is_corrected_and_a_right_status_costs_no_write(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
) -> None:
    ms = machines(3)
    clusters.create(manager_cluster("liar", node_specs(ms)))
    st = clusters.wait_ready("liar")
    lie = {
        "phase": "Degraded",
        "leader": "manager-9",
        "nodeSummary": "0/3",
        "nodes": [],
        "conditions": [{"type": "Ready", "status": "False", "reason": "Lie", "message": "lie",
                        "lastTransitionTime": "2020-01-01T00:00:00Z"}],
    }  # fmt: skip
    patch_status(clusters, "liar", lie)
    clusters.wait_status(
        "liar", lambda s: truthful(s, st["leader"], 3), timeout=HEAL_BOUND, message="the lie to be corrected"
    )
    # At rest with a right status: no status write for several resyncs (same resourceVersion).
    time.sleep(RESYNC * 1.2)  # let the healing pass's own write settle
    version = resource_version(clusters, "liar")
    time.sleep(RESYNC * 3)
    assert resource_version(clusters, "liar") == version, "the operator rewrote a right status at rest"


def with_policies(body: dict[str, Any], policies: list[str]) -> dict[str, Any]:
    body["spec"]["managementPolicies"] = policies
    return body


def held(st: dict[str, Any], what: str) -> bool:
    return any("held back" in p and what in p for p in st.get("plannedActions") or [])


def test_observe_only_writes_nothing_and_says_what_it_holds_back(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
) -> None:
    ms = machines(2)
    clusters.create(with_policies(manager_cluster("watch", node_specs(ms)), ["Observe"]))
    st = clusters.wait_status("watch", lambda s: held(s, "bootstrap"), message="the held-back bootstrap")
    assert "managementPolicies do not allow Bootstrap" in (st.get("error") or "")
    wait_for(
        lambda: any(e["reason"] == "HeldByPolicy" for e in clusters.events("watch")), message="a HeldByPolicy Event"
    )
    time.sleep(RESYNC * 1.5)
    assert writes(sim, ms) == [] and sim_cluster(sim, ms) is None


def test_bootstrap_allowed_join_held_back(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
) -> None:
    ms = machines(2)
    clusters.create(with_policies(manager_cluster("grow", node_specs(ms)), ["Bootstrap"]))
    clusters.wait_status("grow", lambda s: held(s, "join manager-2"), message="the held-back join")
    assert live(sim, ms) == {"manager-1"}
    assert [w[1] for w in writes(sim, ms)] == ["PUT"]  # the bootstrap only
    clusters.patch("grow", {"spec": {"managementPolicies": ["Bootstrap", "Join"]}})
    clusters.wait_ready("grow", timeout=30)
    assert live(sim, ms) == {"manager-1", "manager-2"}


def test_configure_held_back(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
) -> None:
    ms = machines(1)
    body = with_policies(manager_cluster("cfg", node_specs(ms), config={"heartbeat": 7}), ["Bootstrap", "Join"])
    clusters.create(body)
    clusters.wait_status("cfg", lambda s: held(s, "apply config"), message="the held-back config")
    c = sim_cluster(sim, ms)
    assert c is not None and c["settings"] != {"heartbeat": 7}
    assert "PATCH" not in [w[1] for w in writes(sim, ms)]
    clusters.patch("cfg", {"spec": {"managementPolicies": ["*"]}})
    clusters.wait_ready("cfg", timeout=30)
    c = sim_cluster(sim, ms)
    assert c is not None and c["settings"] == {"heartbeat": 7}


def test_removal_held_back_then_allowed(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
) -> None:
    ms = machines(3)
    nodes = node_specs(ms)
    clusters.create(with_policies(manager_cluster("keep", nodes), ["Bootstrap", "Join", "Configure"]))
    clusters.wait_ready("keep", timeout=30)
    clusters.set_nodes("keep", nodes[:2])
    clusters.wait_status("keep", lambda s: held(s, "remove manager-3"), message="the held-back removal")
    time.sleep(RESYNC * 1.5)
    assert live(sim, ms) == {"manager-1", "manager-2", "manager-3"}
    assert "DELETE" not in [w[1] for w in writes(sim, ms)]
    clusters.patch("keep", {"spec": {"managementPolicies": ["*"]}})
    wait_for(lambda: live(sim, ms) == {"manager-1", "manager-2"}, timeout=30, message="the removal")
    clusters.wait_ready("keep", timeout=30)


def test_delete_with_remove_nodes_but_removal_not_allowed_removes_nothing(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, operator: OperatorProcess
) -> None:
    ms = machines(2)
    body = manager_cluster("norm", node_specs(ms), deletion_policy="RemoveNodes")
    clusters.create(with_policies(body, ["Bootstrap", "Join", "Configure"]))
    clusters.wait_ready("norm", timeout=30)
    clusters.delete("norm")
    wait_for(lambda: not clusters.exists("norm"), timeout=30, message="the resource to go")
    assert live(sim, ms) == {"manager-1", "manager-2"}
    assert "DELETE" not in [w[1] for w in writes(sim, ms)]


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        (["*", "Join"], "managementPolicies '*' stands alone"),
        (["Delete"], "Unsupported value"),
        (["Join", "Join"], "Duplicate value"),
    ],
)
def test_the_crd_refuses_nonsense_policies(
    sim: SimulatorProcess, machines: Machines, clusters: Clusters, policies: list[str], message: str
) -> None:
    body = with_policies(manager_cluster("bad", node_specs(machines(1))), policies)
    with pytest.raises(ApiException) as refused:
        clusters.create(body)
    assert refused.value.status == 422 and message in str(refused.value.body)


def test_default_policies_are_everything(machines: Machines, clusters: Clusters) -> None:
    obj = clusters.create(manager_cluster("dflt", node_specs(machines(1))))
    assert obj["spec"]["managementPolicies"] == ["*"]
