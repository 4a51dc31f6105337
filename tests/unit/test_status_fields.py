"""Every field of the status, compared whole: phase, the three conditions (reason, message,
transition time), node rows, logs, cursors, planned actions; and the status of a pass that
stopped before the managers, the merge patch and the memory read back. Actions come from
`planner.plan`, so the tests hold whatever types the planner uses inside."""

from __future__ import annotations

from typing import Any

from clusterop import planner, status
from clusterop.model import EMPTY_CONFIG_HASH, LogLine, Member, Memory, NodeKind, NodeSeen, Observed, Pending

from .test_planner import NOW, D, M, R, U, applied, seen, spec

S3 = spec("n1", "n2", "n3")
S2 = spec("n1", "n2")
JOIN_N3 = "join n3 via 127.1.0.1,127.1.0.2"


def row(name: str, state: str, *, online: bool, master: bool = False, member: bool = True, **kw: Any) -> dict[str, Any]:
    n = int(name[1:])
    return {
        "name": name,
        "hostIP": kw.get("host_ip", f"127.1.0.{n}"),
        "endpoint": kw.get("endpoint", f"http://127.0.0.1:{9000 + n}"),
        "online": online,
        "master": master,
        "initialized": kw.get("initialized", member),
        "state": state,
        "member": member,
    }


def cond(type_: str, ok: bool, reason: str, message: str, when: str = "T1", gen: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": when,
        "observedGeneration": gen,
    }


def pass_status(s: Any, o: Observed, memory: Memory, previous: dict[str, Any] | None = None, **kw: Any) -> Any:
    actions = kw.pop("actions", None)
    if actions is None:
        actions = planner.plan(s, o, memory, NOW)
    return status.build(
        previous=previous or {},
        spec=s,
        seen=o,
        memory=memory,
        actions=actions,
        executed=kw.pop("executed", None),
        now=kw.pop("now", "T1"),
    )


def test_a_join_planned_field_by_field() -> None:
    o = seen({"n1": M, "n2": R, "n3": U}, {"n1": True, "n2": True})
    assert pass_status(S3, o, applied(S3)) == {
        "observedGeneration": 1,
        "phase": "Joining",
        "conditions": [
            cond("Ready", False, "Joining", "cluster is joining"),
            cond("Progressing", True, "Joining", JOIN_N3),
            cond("Degraded", False, "AsExpected", "no problem observed"),
        ],
        "initialized": True,
        "leader": "n1",
        "nodes": [
            row("n1", "Master", online=True, master=True),
            row("n2", "Replica", online=True),
            row("n3", "Uninitialized", online=False, member=False),
        ],
        "nodeSummary": "2/3",
        "error": None,
        "logs": [],
        "logCursors": {},
        "appliedConfigHash": S3.config_hash,
        "plannedActions": [JOIN_N3],
        "pending": None,
    }


def test_ready_after_degraded_moves_only_the_conditions_that_changed() -> None:
    broken = seen({"n1": M, "n2": R, "n3": NodeKind.UNREACHABLE}, {"n1": True, "n2": True, "n3": False})
    before = pass_status(S3, broken, applied(S3), now="T1")
    assert before["phase"] == "Degraded"
    assert before["error"] == "n3 is unreachable: boom; n3 is offline in the master's node list"
    assert before["conditions"] == [
        cond("Ready", False, "NodeUnreachable", "n3 is unreachable: boom"),
        cond("Progressing", False, "Reconciled", "nothing to do"),
        cond("Degraded", True, "NodeUnreachable", "n3 is unreachable: boom; n3 is offline in the master's node list"),
    ]
    assert before["nodes"][2] == row("n3", "Offline", online=False)
    assert before["nodeSummary"] == "2/3"
    ok = seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": True})
    after = pass_status(S3, ok, status.memory_of(before), previous=before, now="T2")
    assert after["phase"] == "Ready" and after["error"] is None and after["nodeSummary"] == "3/3"
    assert after["conditions"] == [
        cond("Ready", True, "ClusterReady", "3/3 nodes online, leader n1", when="T2"),
        cond("Progressing", False, "Reconciled", "nothing to do", when="T1"),  # unchanged: keeps its time
        cond("Degraded", False, "AsExpected", "no problem observed", when="T2"),
    ]


def test_a_node_being_joined_is_not_reported_offline() -> None:
    o = seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": False})
    memory = Memory(
        pending=Pending("join", "n3", "127.1.0.3", "http://127.0.0.1:9003", since=NOW),
        applied_config_hash=S3.config_hash,
    )
    st = pass_status(S3, o, memory, actions=())
    assert st["phase"] == "Joining" and st["error"] is None
    assert st["pending"] == memory.pending.to_status()  # type: ignore[union-attr]
    assert st["conditions"][1] == cond("Progressing", True, "Joining", "nothing to do")
    assert st["conditions"][0] == cond("Ready", False, "Joining", "cluster is joining")


def test_paused_plans_but_says_it_would() -> None:
    o = seen({"n1": M, "n2": R, "n3": U}, {"n1": True, "n2": True})
    p = spec("n1", "n2", "n3", paused=True)
    st = pass_status(p, o, applied(p))
    assert st["phase"] == "Paused"
    assert st["plannedActions"] == [f"paused, would {JOIN_N3}"]
    assert st["conditions"][1] == cond("Progressing", False, "Paused", "paused: observing only")
    assert st["conditions"][0] == cond("Ready", False, "Paused", "cluster is paused")


def test_an_executed_write_names_the_phase_and_the_progress() -> None:
    o = seen({"n1": M, "n2": R, "n3": U}, {"n1": True, "n2": True})
    actions = planner.plan(S3, o, applied(S3), NOW)
    st = pass_status(S3, o, applied(S3), actions=(), executed=actions[0])
    assert st["phase"] == "Joining" and st["plannedActions"] == []
    assert st["conditions"][1] == cond("Progressing", True, "Joining", JOIN_N3)


def test_each_write_has_its_phase() -> None:
    fresh = seen({"n1": U, "n2": U, "n3": U})
    assert pass_status(S3, fresh, Memory())["phase"] == "Bootstrapping"
    two = spec("n1", "n2")
    extra = seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": True})
    assert pass_status(two, extra, applied(two))["phase"] == "Removing"
    changed = spec("n1", "n2", config={"a": 1})
    formed = seen({"n1": M, "n2": R}, {"n1": True, "n2": True})
    st = pass_status(changed, formed, applied(spec("n1", "n2")))
    assert st["phase"] == "Configuring" and st["plannedActions"] == [f"apply config {changed.config_hash} on n1"]


def test_a_member_the_spec_left_is_listed_last_with_what_memory_knows() -> None:
    two = spec("n2", "n1")
    extra = seen({"n1": M, "n2": R}, {"n1": True, "n2": True, "n4": True, "n3": False})
    memory = Memory(
        applied_config_hash=two.config_hash, endpoints={"n4": "http://127.0.0.1:9104"}, cursors={"n4": "c4", "n9": "c9"}
    )
    st = pass_status(two, extra, memory)
    assert [n["name"] for n in st["nodes"]] == ["n2", "n1", "n3", "n4"]
    assert st["nodes"][3] == row("n4", "Replica", online=True, endpoint="http://127.0.0.1:9104")
    assert st["nodes"][2] == row("n3", "Offline", online=False, endpoint="")
    assert st["logCursors"] == {"n4": "c4"}  # n9 is neither wanted nor a member
    assert st["nodeSummary"] == "2/2" and st["phase"] != "Ready"


def test_without_the_master_list_cursors_of_remembered_members_stay() -> None:
    o = Observed(nodes={"n1": NodeSeen("n1", NodeKind.UNREACHABLE, "refused", cursor="new1")})
    memory = Memory(endpoints={"n5": "http://x"}, cursors={"n5": "c5", "n6": "c6", "n1": "old1"})
    st = pass_status(spec("n1"), o, memory, actions=())
    assert st["logCursors"] == {"n1": "new1", "n5": "c5"}
    assert st["initialized"] is False and st["leader"] is None and st["phase"] == "Degraded"
    assert st["nodes"] == [row("n1", "Unreachable", online=False, member=False)]


def test_logs_are_appended_in_time_order_and_capped() -> None:
    old = [{"node": "n1", "timestamp": i, "time": "t", "message": f"old {i}"} for i in range(15)]
    lines = {
        "n1": NodeSeen("n1", NodeKind.MASTER, logs=(LogLine("n1", 2_000_000, "b"), LogLine("n1", 1_000_000, "a"))),
        "n2": NodeSeen("n2", NodeKind.REPLICA, logs=tuple(LogLine("n2", 1_000_000 + i, f"r{i}") for i in range(6))),
    }
    o = Observed(
        nodes=lines,
        members=(Member("n1", "127.1.0.1", True, True, True), Member("n2", "127.1.0.2", True, False, True)),
        master="n1",
    )
    st = pass_status(spec("n1", "n2"), o, applied(spec("n1", "n2")), previous={"logs": old})
    assert len(st["logs"]) == status.MAX_LOGS
    messages = [x["message"] for x in st["logs"]]
    assert messages == ([f"old {i}" for i in range(15)] + ["a", "r0", "r1", "r2", "r3", "r4", "r5", "b"])[-20:]
    assert st["logs"][-1] == {"node": "n1", "timestamp": 2_000_000, "time": "1970-01-01T00:00:02.000Z", "message": "b"}


def test_the_ready_condition_needs_the_config_applied() -> None:
    s = spec("n1", "n2")
    formed = seen({"n1": M, "n2": R}, {"n1": True, "n2": True})
    assert pass_status(s, formed, Memory(), actions=())["phase"] == "Ready"  # no config: the empty hash counts
    assert s.config_hash == EMPTY_CONFIG_HASH
    c = spec("n1", "n2", config={"a": 1})
    assert pass_status(c, formed, Memory(), actions=())["phase"] == "Waiting"
    assert pass_status(c, formed, applied(c), actions=())["phase"] == "Ready"


def test_ready_needs_every_member_initialized_and_no_pending() -> None:
    s = spec("n1", "n2")
    members = (Member("n1", "127.1.0.1", True, True, True), Member("n2", "127.1.0.2", True, False, False))
    o = Observed(nodes={"n1": NodeSeen("n1", M), "n2": NodeSeen("n2", R)}, members=members, master="n1")
    st = pass_status(s, o, applied(s), actions=())
    assert st["phase"] == "Waiting" and st["conditions"][0] == cond("Ready", False, "Waiting", "cluster is waiting")
    assert st["nodes"][1]["initialized"] is False


def test_status_before_the_managers_keeps_what_they_said() -> None:
    formed = pass_status(S3, seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": True}), applied(S3))
    previous = {**formed, "unrelated": 1}
    st = status.blocked_before_managers(
        previous=previous, generation=4, phase="Invalid", reason="SecretMissing", message="no key", now="T9"
    )
    assert st == {
        **{k: formed[k] for k in status.OWNED},
        "observedGeneration": 4,
        "phase": "Invalid",
        "error": "no key",
        "plannedActions": [],
        "conditions": [
            cond("Ready", False, "SecretMissing", "no key", when="T9", gen=4),
            cond("Progressing", False, "SecretMissing", "no key", when="T1", gen=4),
            cond("Degraded", True, "SecretMissing", "no key", when="T9", gen=4),
        ],
    }
    fresh = status.blocked_before_managers(
        previous={}, generation=1, phase="Invalid", reason="R", message="m", now="T1"
    )
    assert set(fresh) == {"observedGeneration", "phase", "error", "plannedActions", "conditions"}


def test_merge_patch_writes_changes_and_nulls_only_owned_keys() -> None:
    previous = {"phase": "Ready", "pending": {"op": "join"}, "leader": None, "foreign": 1, "error": "x"}
    desired: dict[str, Any] = {"phase": "Ready", "error": None, "nodes": []}
    assert status.merge_patch(previous, desired) == {"pending": None, "error": None, "nodes": []}
    assert status.merge_patch({}, {"leader": None, "phase": "Waiting"}) == {"phase": "Waiting"}


def test_memory_reads_members_cursors_and_hash() -> None:
    st = {
        "nodes": [
            {"name": "n1", "endpoint": "http://a", "member": True},
            {"name": "n2", "endpoint": "http://b", "member": False},
            {"name": "n3", "endpoint": "", "member": True},
            "junk",
        ],
        "logCursors": {"n1": 5},
        "appliedConfigHash": "",
        "leader": "",
        "pending": {"op": "remove", "node": "n2", "since": 3.0},
    }
    m = status.memory_of(st)
    assert (m.endpoints, m.cursors, m.applied_config_hash, m.leader) == ({"n1": "http://a"}, {"n1": "5"}, None, None)
    assert m.pending is not None and (m.pending.op, m.pending.node, m.pending.since) == ("remove", "n2", 3.0)
    assert status.memory_of({"logCursors": ["x"]}).cursors == {}
    assert status.memory_of({"appliedConfigHash": "abc", "leader": "n1"}).applied_config_hash == "abc"


def test_blocked_and_waits_are_problems_but_progress_is_not() -> None:
    offline = seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": False, "n3": True})
    st = pass_status(S2, offline, applied(S2))  # MemberOffline holds the removal of n3
    assert st["phase"] == "Degraded"
    assert st["conditions"][2] == cond(
        "Degraded",
        True,
        "MemberOffline",
        "not removing n3 while n2 is offline; n2 is offline in the master's node list",
    )
    assert st["conditions"][0] == cond("Ready", False, "MemberOffline", "not removing n3 while n2 is offline")
    unreachable = seen({"n1": M, "n2": R, "n3": D}, {"n1": True, "n2": True})  # n3 cannot be joined
    st = pass_status(S3, unreachable, applied(S3))
    assert st["error"] == "cannot join n3: boom; n3 is unreachable: boom"
    assert st["conditions"][2]["reason"] == "NodeUnreachable"
    # WaitingForJoins and a Joining wait are progress, not problems
    joins_first = seen({"n1": M, "n2": U, "n3": R}, {"n1": True, "n3": True})
    st = pass_status(S2, joins_first, applied(S2))
    assert st["phase"] == "Joining" and st["error"] is None and st["conditions"][2]["status"] == "False"
    joining = seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": False})
    st = pass_status(S3, joining, with_pending(applied(S3), Pending("join", "n3", since=NOW)))
    assert st["error"] is None and st["plannedActions"] == ["wait: n3 joined; waiting until the master lists it online"]


def with_pending(m: Memory, p: Pending) -> Memory:
    return Memory(pending=p, applied_config_hash=m.applied_config_hash)


def test_an_unreachable_node_outside_the_spec_is_no_problem_and_a_listed_master_stays_master() -> None:
    o = Observed(
        nodes={
            "n1": NodeSeen("n1", NodeKind.UNREACHABLE, "timeout"),
            "n2": NodeSeen("n2", R),
            "n7": NodeSeen("n7", D, "x"),
        },
        members=(Member("n1", "127.1.0.1", True, True, True), Member("n2", "127.1.0.2", True, False, True)),
        master="n1",
    )
    st = pass_status(S2, o, applied(S2), actions=())
    assert st["error"] == "n1 is unreachable: timeout"
    assert st["nodes"][0] == row("n1", "Master", online=True, master=True)


def test_a_pending_write_read_back_from_status_with_its_defaults() -> None:
    m = status.memory_of({"pending": {"op": "join", "node": "n2"}})
    assert m.pending is not None
    assert (m.pending.host_ip, m.pending.endpoint, m.pending.since, m.pending.attempts) == ("", "", 0.0, 1)
    full = {"op": "join", "node": "n2", "hostIP": "127.1.0.2", "endpoint": "http://e", "since": 5.5, "attempts": 3}
    m = status.memory_of({"pending": full})
    assert m.pending is not None
    assert (m.pending.host_ip, m.pending.endpoint, m.pending.since, m.pending.attempts) == (
        "127.1.0.2",
        "http://e",
        5.5,
        3,
    )
    assert status.memory_of({"pending": None}).pending is None
