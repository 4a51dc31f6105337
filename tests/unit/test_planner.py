"""The planner's rules as a table: (spec, observed, memory) -> the first action."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from clusterop.errors import InvalidSpec
from clusterop.model import (
    WRITES,
    Blocked,
    Bootstrap,
    ClusterSpec,
    Configure,
    Join,
    Member,
    Memory,
    NodeKind,
    NodeSeen,
    Observed,
    Pending,
    Reason,
    Remove,
    Wait,
    config_hash,
)
from clusterop.planner import RESEND_AFTER, deletion_finished, plan, plan_deletion, retry_delay, settle

U, INIT, F, M, R, X, D, A = (
    NodeKind.UNINITIALIZED,
    NodeKind.INITIALIZING,
    NodeKind.FAILED,
    NodeKind.MASTER,
    NodeKind.REPLICA,
    NodeKind.REMOVED,
    NodeKind.UNREACHABLE,
    NodeKind.UNAUTHORIZED,
)
NOW = 1_000_000.0


def spec(*names: str, config: dict[str, Any] | None = None, paused: bool = False) -> ClusterSpec:
    body = {
        "metadata": {"name": "c", "namespace": "ns", "generation": 1},
        "spec": {
            "nodes": [
                {"name": n, "hostIP": f"127.1.0.{int(n[1:])}", "endpoint": f"http://127.0.0.1:{9000 + int(n[1:])}"}
                for n in names
            ],
            "encryptionKeySecretRef": {"name": "k"},
            "credentialsSecretRef": {"name": "c"},
            "config": config or {},
        },
    }
    if paused:
        body["metadata"]["annotations"] = {"cloudify.co/paused": "true"}  # type: ignore[index]
    return ClusterSpec.parse(body)


def seen(kinds: dict[str, NodeKind], members: dict[str, bool] | None = None, master: str | None = None) -> Observed:
    """members: name -> online; the master is the node whose kind is MASTER unless given."""
    nodes = {n: NodeSeen(n, k, detail="boom" if k in (F, D, A) else "") for n, k in kinds.items()}
    masters = [n for n, k in kinds.items() if k is M]
    master = master or (masters[0] if len(masters) == 1 else None)
    listed = None
    if members is not None:
        listed = tuple(Member(n, f"127.1.0.{int(n[1:])}", online, n == master, True) for n, online in members.items())
    return Observed(nodes=nodes, members=listed, master=master)


def applied(s: ClusterSpec) -> Memory:
    return Memory(applied_config_hash=s.config_hash)


def first(s: ClusterSpec, o: Observed, m: Memory | None = None) -> Any:
    actions = plan(s, o, m or Memory(), NOW)
    return actions[0] if actions else None


def test_bootstrap_only_when_every_node_answered_uninitialized() -> None:
    s = spec("n1", "n2", "n3")
    assert first(s, seen({"n1": U, "n2": U, "n3": U})) == Bootstrap(s.nodes[0])


@pytest.mark.parametrize("other", [INIT, D, R, X, F])
def test_no_bootstrap_when_any_node_is_not_plainly_uninitialized(other: NodeKind) -> None:
    s = spec("n1", "n2", "n3")
    action = first(s, seen({"n1": U, "n2": U, "n3": other}))
    assert not isinstance(action, Bootstrap)
    assert isinstance(action, Wait | Blocked)


def test_remembered_bootstrap_is_never_sent_to_another_node() -> None:
    s = spec("n1", "n2", "n3")
    pending = Pending("bootstrap", "n1", "127.1.0.1", "http://127.0.0.1:9001", since=NOW - 1)
    # n1 still shows no trace and the intent is young: wait.
    assert isinstance(first(s, seen({"n1": U, "n2": U, "n3": U}), Memory(pending=pending)), Wait)
    # Old enough: resend, to the same node only.
    old = Pending("bootstrap", "n1", "127.1.0.1", "http://127.0.0.1:9001", since=NOW - RESEND_AFTER - 1)
    action = first(s, seen({"n1": U, "n2": U, "n3": U}), Memory(pending=old))
    assert isinstance(action, Bootstrap) and action.node.name == "n1" and action.retry
    # The node that was asked is unreachable: never bootstrap elsewhere.
    assert isinstance(first(s, seen({"n1": D, "n2": U, "n3": U}), Memory(pending=old)), Wait)


def test_remembered_bootstrap_of_a_node_that_left_the_spec_is_still_respected() -> None:
    s = spec("n2", "n3")
    pending = Pending("bootstrap", "n1", "127.1.0.1", "http://127.0.0.1:9001", since=NOW - 1)
    action = first(s, seen({"n1": INIT, "n2": U, "n3": U}), Memory(pending=pending))
    assert isinstance(action, Wait) and action.reason == "Bootstrapping"


def test_failed_start_is_retried_on_the_same_node_after_backoff() -> None:
    s = spec("n1", "n2")
    young = Pending("bootstrap", "n1", since=NOW - 1, attempts=1)
    assert isinstance(first(s, seen({"n1": F, "n2": U}), Memory(pending=young)), Wait)
    old = Pending("bootstrap", "n1", since=NOW - retry_delay(1) - 1, attempts=1)
    action = first(s, seen({"n1": F, "n2": U}), Memory(pending=old))
    assert isinstance(action, Bootstrap) and action.node.name == "n1"


def test_join_one_node_with_every_member_host_ip() -> None:
    s = spec("n1", "n2", "n3")
    o = seen({"n1": M, "n2": R, "n3": U}, members={"n1": True, "n2": True})
    assert first(s, o, applied(s)) == Join(s.nodes[2], ("127.1.0.1", "127.1.0.2"))


def test_nothing_new_while_a_join_is_in_flight() -> None:
    s = spec("n1", "n2", "n3")
    o = seen({"n1": M, "n2": INIT, "n3": U}, members={"n1": True})
    pending = Pending("join", "n2", "127.1.0.2", "http://127.0.0.1:9002", since=NOW - 0.1)
    actions = plan(s, o, Memory(pending=pending), NOW)
    assert isinstance(actions[0], Wait) and actions[0].reason == "Joining"
    assert not any(isinstance(a, Join | Remove | Configure | Bootstrap) for a in actions)


def test_settle_join_needs_not_master_and_online_in_the_list() -> None:
    pending = Pending("join", "n2")
    assert settle(pending, seen({"n1": M, "n2": R}, members={"n1": True, "n2": False})) == pending
    assert settle(pending, seen({"n1": M, "n2": INIT}, members={"n1": True, "n2": True})) == pending
    assert settle(pending, seen({"n1": M, "n2": R}, members={"n1": True, "n2": True})) is None


def test_remove_replicas_first_master_last() -> None:
    # By name alone the master (n1) would go first: only the master-last rule puts n2 before it.
    s = spec("n3")
    o = seen({"n1": M, "n2": R, "n3": R}, members={"n1": True, "n2": True, "n3": True})
    assert first(s, o, applied(s)) == Remove("n2", "n1")
    o = seen({"n1": M, "n3": R}, members={"n1": True, "n3": True})
    assert first(s, o, applied(s)) == Remove("n1", "n1")


def removal_rules(s: ClusterSpec, o: Observed) -> list[Any]:
    return [a for a in plan(s, o, applied(s), NOW) if isinstance(a, Remove | Blocked | Wait)]


def test_never_the_last_node() -> None:
    """The spec wants only n2, which has not joined: the last member n1 is never removed, and the
    LastNode rule says so (it comes first: it does not rely on the wait for joins)."""
    s = spec("n2")
    o = seen({"n1": M, "n2": U}, members={"n1": True})
    actions = plan(s, o, applied(s), NOW)
    assert isinstance(actions[0], Join)
    assert not any(isinstance(a, Remove) for a in actions)
    assert [a.reason for a in removal_rules(s, o)] == [Reason.LAST_NODE]


def test_the_master_is_not_removed_without_an_online_wanted_successor() -> None:
    s = spec("n2")
    o = seen({"n1": M, "n2": R}, members={"n1": True, "n2": False})
    actions = plan(s, o, applied(s), NOW)
    assert not any(isinstance(a, Remove) for a in actions)
    assert [a.reason for a in removal_rules(s, o)] == [Reason.NO_SUCCESSOR]


def test_waiting_for_joins_is_a_wait_not_a_block_and_no_problem() -> None:
    s = spec("n2", "n3")
    o = seen({"n1": M, "n2": R, "n3": U}, members={"n1": True, "n2": True})
    actions = plan(s, o, applied(s), NOW)
    assert isinstance(actions[0], Join) and actions[0].node.name == "n3"
    waits = [a for a in actions if isinstance(a, Wait)]
    assert [w.reason for w in waits] == [Reason.WAITING_FOR_JOINS] and not any(isinstance(a, Blocked) for a in actions)
    assert not waits[0].reason.is_problem and not waits[0].reason.in_flight


def test_a_remembered_bootstrap_of_another_node_than_the_first_is_never_moved() -> None:
    """Never a second bootstrap: the intent of n2's bootstrap holds even while every node still
    looks uninitialized (the request may be on its way), where a fresh plan would pick n1."""
    s = spec("n1", "n2", "n3")
    uninitialized = seen({"n1": U, "n2": U, "n3": U})
    assert first(s, uninitialized) == Bootstrap(s.nodes[0])
    young = Pending("bootstrap", "n2", "127.1.0.2", "http://127.0.0.1:9002", since=NOW - 1)
    action = first(s, uninitialized, Memory(pending=young))
    assert isinstance(action, Wait) and action.reason == Reason.BOOTSTRAPPING
    old = replace(young, since=NOW - RESEND_AFTER - 1)
    action = first(s, uninitialized, Memory(pending=old))
    assert action == Bootstrap(s.nodes[1], retry=True)
    for kind in (INIT, D, F, X):  # whatever n2 says: never a bootstrap anywhere else
        others = [a for a in plan(s, seen({"n1": U, "n2": kind, "n3": U}), Memory(pending=old), NOW)]
        assert not any(isinstance(a, Bootstrap) and a.node.name != "n2" for a in others)


def test_no_removal_while_another_member_is_offline() -> None:
    s = spec("n1", "n2")
    o = seen({"n1": M, "n2": R, "n3": R}, members={"n1": True, "n2": False, "n3": True})
    action = first(s, o, applied(s))
    assert isinstance(action, Blocked) and action.reason == "MemberOffline"


def test_never_removes_a_node_the_spec_wants() -> None:
    s = spec("n1", "n2", "n3")
    o = seen({"n1": M, "n2": R, "n3": R}, members={"n1": True, "n2": True, "n3": True})
    assert plan(s, o, applied(s), NOW) == ()


def test_resent_removal_stops_if_the_node_is_wanted_again() -> None:
    s = spec("n1", "n2")
    o = seen({"n1": M, "n2": R}, members={"n1": True, "n2": True})
    pending = Pending("remove", "n2", since=NOW - RESEND_AFTER - 1)
    action = first(s, o, Memory(pending=pending, applied_config_hash=s.config_hash))
    assert isinstance(action, Wait)


def test_config_is_sent_when_its_hash_differs() -> None:
    s = spec("n1", config={"a": 1})
    o = seen({"n1": M}, members={"n1": True})
    assert first(s, o) == Configure(s.config_json, "n1")
    assert first(s, o, Memory(applied_config_hash=config_hash('{"a":1}'))) is None
    assert first(spec("n1"), o) is None  # an empty config is never PATCHed


def test_credentials_rejected_blocks_everything() -> None:
    s = spec("n1", "n2")
    action = first(s, seen({"n1": A, "n2": A}))
    assert isinstance(action, Blocked) and action.reason == "CredentialsRejected"


def test_two_masters_is_split_brain() -> None:
    s = spec("n1", "n2")
    action = first(s, seen({"n1": M, "n2": M}))
    assert isinstance(action, Blocked) and action.reason == "SplitBrain"


def test_no_master_but_replicas_waits_for_failover() -> None:
    s = spec("n1", "n2", "n3")
    action = first(s, seen({"n1": D, "n2": R, "n3": R}))
    assert isinstance(action, Wait) and action.reason == "NoMaster"


def test_node_of_another_cluster_is_not_joined() -> None:
    s = spec("n1", "n2")
    o = seen({"n1": M, "n2": R}, members={"n1": True})
    action = first(s, o, applied(s))
    assert isinstance(action, Blocked) and action.reason == "ForeignCluster"


def test_removing_the_master_stays_in_progress_until_a_successor_is_elected() -> None:
    s = spec("n2", "n3")
    pending = Pending("remove", "n1", endpoint="http://127.0.0.1:9001", since=NOW - 0.1)
    electing = seen({"n1": X, "n2": R, "n3": R})
    assert settle(pending, electing) == pending
    action = first(s, electing, Memory(pending=pending))
    assert isinstance(action, Wait) and action.reason == "Electing"
    elected = seen({"n1": X, "n2": M, "n3": R}, members={"n2": True, "n3": True})
    assert settle(pending, elected) is None


# -- managementPolicies -----------------------------------------------------------------------


def with_policies(s: ClusterSpec, *policies: str) -> ClusterSpec:
    return replace(s, policies=frozenset(policies))


@pytest.mark.parametrize(
    ("policy", "kinds", "members", "write"),
    [
        ("Bootstrap", {"n1": U, "n2": U}, None, Bootstrap),
        ("Join", {"n1": M, "n2": U}, {"n1": True}, Join),
        ("Remove", {"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": True}, Remove),
    ],
)
def test_a_write_the_policies_leave_out_is_held_back(
    policy: str, kinds: dict[str, NodeKind], members: dict[str, bool] | None, write: type
) -> None:
    s = spec("n1", "n2")
    o = seen(kinds, members)
    assert isinstance(first(s, o, applied(s)), write)
    others = {"Bootstrap", "Join", "Configure", "Remove"} - {policy}
    held = plan(with_policies(s, *others), o, applied(s), NOW)
    assert not any(isinstance(a, write) for a in held)
    assert held[0] == Blocked(
        "HeldByPolicy", f"managementPolicies do not allow {policy}: held back {first(s, o, applied(s)).describe()}"
    )


def test_configure_held_back_and_an_allowed_write_still_goes_first() -> None:
    s = spec("n1", "n2", config={"a": 1})
    o = seen({"n1": M, "n2": U}, {"n1": True})
    assert isinstance(first(s, o), Join)
    only_config = with_policies(s, "Configure")
    actions = plan(only_config, o, Memory(), NOW)
    assert isinstance(actions[0], Configure)
    assert [a.reason for a in actions[1:] if isinstance(a, Blocked)] == ["HeldByPolicy"]
    assert plan(with_policies(s), o, Memory(), NOW)[0].reason == "HeldByPolicy"  # observe only


def test_policies_parse_and_refuse_nonsense() -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "c"},
        "spec": {
            "nodes": [{"name": "n1", "hostIP": "127.0.0.1", "endpoint": "http://127.0.0.1:1"}],
            "encryptionKeySecretRef": {"name": "k"},
            "credentialsSecretRef": {"name": "c"},
        },
    }
    assert ClusterSpec.parse(body).policies == {"Bootstrap", "Join", "Configure", "Remove"}
    body["spec"]["managementPolicies"] = ["Observe", "Join"]
    assert ClusterSpec.parse(body).policies == {"Join"}
    body["spec"]["managementPolicies"] = ["Observe"]
    assert ClusterSpec.parse(body).policies == frozenset()
    for bad in (["*", "Join"], ["Delete"]):
        body["spec"]["managementPolicies"] = bad
        with pytest.raises(InvalidSpec):
            ClusterSpec.parse(body)


# -- deletion (deletionPolicy RemoveNodes): the same removal rules ------------------------------


def test_deletion_removes_replicas_one_at_a_time_and_keeps_the_master() -> None:
    s = spec("n1", "n2", "n3")
    o = seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": True})
    actions = plan_deletion(s, o, applied(s), NOW)
    assert actions[0] == Remove("n2", "n1") and not any(isinstance(a, Remove) for a in actions[1:])
    assert deletion_finished(o, None) is None
    last = seen({"n1": M}, {"n1": True})
    assert not any(isinstance(a, WRITES) for a in plan_deletion(s, last, applied(s), NOW))
    assert deletion_finished(last, None) == "removed every node but the last (n1), which is never removed"


def test_deletion_never_removes_while_a_member_is_offline_or_a_removal_is_in_flight() -> None:
    s = spec("n1", "n2", "n3")
    o = seen({"n1": M, "n2": R, "n3": D}, {"n1": True, "n2": True, "n3": False})
    assert not any(isinstance(a, Remove) and a.name == "n2" for a in plan_deletion(s, o, applied(s), NOW))
    pending = Memory(applied_config_hash=s.config_hash, pending=Pending("remove", "n2", since=NOW - 1))
    o2 = seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": True})
    assert not any(isinstance(a, WRITES) for a in plan_deletion(s, o2, pending, NOW))
    assert deletion_finished(o2, pending.pending) is None


def test_deletion_without_a_master_writes_nothing_and_bootstraps_nothing() -> None:
    s = spec("n1", "n2")
    assert not any(isinstance(a, WRITES) for a in plan_deletion(s, seen({"n1": U, "n2": U}), Memory(), NOW))
    assert deletion_finished(seen({"n1": U, "n2": U}), None) == "no cluster found on the managers; nothing to remove"
    assert deletion_finished(seen({"n1": R, "n2": D}), None) is None
