"""Status building: a steady cluster produces an empty patch (no write), changes produce only
the keys that changed, and conditions keep their transition time while unchanged."""

from __future__ import annotations

import json

import pytest

from clusterop.model import (
    Blocked,
    Bootstrap,
    ClusterSpec,
    Configure,
    Join,
    LogLine,
    Member,
    Memory,
    NodeKind,
    NodeSeen,
    Observed,
    Op,
    Pending,
    Problem,
    Reason,
    Remove,
    Wait,
    Write,
)
from clusterop.status import build, memory_of, merge_patch, problems_of, render_problems

SPEC = ClusterSpec.parse(
    {
        "metadata": {"name": "c", "namespace": "ns", "generation": 2},
        "spec": {
            "nodes": [
                {"name": "n1", "hostIP": "127.1.0.1", "endpoint": "http://127.0.0.1:9001"},
                {"name": "n2", "hostIP": "127.1.0.2", "endpoint": "http://127.0.0.1:9002"},
            ],
            "encryptionKeySecretRef": {"name": "k"},
            "credentialsSecretRef": {"name": "c"},
        },
    }
)
MEMBERS = (Member("n1", "127.1.0.1", True, True, True), Member("n2", "127.1.0.2", True, False, True))
READY = Observed(
    nodes={"n1": NodeSeen("n1", NodeKind.MASTER), "n2": NodeSeen("n2", NodeKind.REPLICA)},
    members=MEMBERS,
    master="n1",
)


def test_ready_status_then_no_write_on_the_next_pass() -> None:
    first = build(previous={}, spec=SPEC, seen=READY, memory=Memory(), actions=(), executed=None, now="T1")
    assert first["phase"] == "Ready" and first["nodeSummary"] == "2/2" and first["leader"] == "n1"
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == 2
    again = build(previous=first, spec=SPEC, seen=READY, memory=memory_of(first), actions=(), executed=None, now="T2")
    assert merge_patch(first, again) == {}


def test_a_node_going_offline_changes_only_what_it_must() -> None:
    first = build(previous={}, spec=SPEC, seen=READY, memory=Memory(), actions=(), executed=None, now="T1")
    offline = Observed(
        nodes={"n1": NodeSeen("n1", NodeKind.MASTER), "n2": NodeSeen("n2", NodeKind.UNREACHABLE, "refused")},
        members=(MEMBERS[0], Member("n2", "127.1.0.2", False, False, True)),
        master="n1",
    )
    later = build(previous=first, spec=SPEC, seen=offline, memory=memory_of(first), actions=(), executed=None, now="T2")
    patch = merge_patch(first, later)
    assert set(patch) >= {"conditions", "nodes", "phase", "error", "nodeSummary"}
    assert "leader" not in patch and "observedGeneration" not in patch
    degraded = next(c for c in later["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["lastTransitionTime"] == "T2"
    assert "n2" in degraded["message"]


def test_pending_is_cleared_with_an_explicit_null() -> None:
    memory = Memory(pending=Pending("join", "n2", since=1.0))
    during = build(previous={}, spec=SPEC, seen=READY, memory=memory, actions=(), executed=None, now="T1")
    assert during["pending"]["op"] == "join" and during["phase"] == "Joining"
    after = build(previous=during, spec=SPEC, seen=READY, memory=Memory(), actions=(), executed=None, now="T2")
    assert merge_patch(during, after)["pending"] is None


def test_memory_reads_back_what_status_keeps() -> None:
    st = build(previous={}, spec=SPEC, seen=READY, memory=Memory(), actions=(), executed=None, now="T1")
    memory = memory_of(st)
    assert memory.leader == "n1"
    assert memory.endpoints == {"n1": "http://127.0.0.1:9001", "n2": "http://127.0.0.1:9002"}


def test_times_are_readable_next_to_the_epoch_values() -> None:
    memory = Memory(pending=Pending("join", "n2", since=1796119201.5))
    seen = Observed(
        nodes={
            "n1": NodeSeen("n1", NodeKind.MASTER, logs=(LogLine("n1", 1796119201123456, "node joined"),), cursor="c1"),
            "n2": NodeSeen("n2", NodeKind.REPLICA),
        },
        members=MEMBERS,
        master="n1",
    )
    st = build(previous={}, spec=SPEC, seen=seen, memory=memory, actions=(), executed=None, now="T1")
    assert st["pending"]["since"] == 1796119201.5
    assert st["pending"]["sinceTime"] == "2026-12-01T10:00:01.500Z"
    assert st["logs"] == [
        {"node": "n1", "timestamp": 1796119201123456, "time": "2026-12-01T10:00:01.123Z", "message": "node joined"}
    ]
    assert Pending.from_status(st["pending"]) == memory.pending  # the readable copy is never read back


def test_log_cursors_of_removed_nodes_are_pruned() -> None:
    # n3 was a member (it has a cursor and an endpoint in the last status) and is now gone from the
    # spec and from the master's list: its cursor goes; those of n1 and n2 stay.
    previous = {
        "nodes": [{"name": "n3", "endpoint": "http://127.0.0.1:9003", "member": True}],
        "logCursors": {"n1": "a", "n2": "b", "n3": "c"},
    }
    st = build(
        previous=previous, spec=SPEC, seen=READY, memory=memory_of(previous), actions=(), executed=None, now="T1"
    )
    assert st["logCursors"] == {"n1": "a", "n2": "b"}
    # Without the master's list nothing says n3 left: its cursor is kept.
    blind = Observed(nodes={"n1": NodeSeen("n1", NodeKind.UNREACHABLE, "refused")})
    st = build(
        previous=previous, spec=SPEC, seen=blind, memory=memory_of(previous), actions=(), executed=None, now="T1"
    )
    assert st["logCursors"] == {"n1": "a", "n2": "b", "n3": "c"}


# -- phases, problems and the waiting outcome, as types -----------------------------------------


def test_waiting_for_joins_is_normal_progress_not_degraded() -> None:
    waiting = Wait(Reason.WAITING_FOR_JOINS, "removing n0 waits until every node of the spec has joined")
    joining = Observed(
        nodes={"n1": NodeSeen("n1", NodeKind.MASTER), "n2": NodeSeen("n2", NodeKind.UNINITIALIZED)},
        members=MEMBERS[:1],
        master="n1",
    )
    st = build(previous={}, spec=SPEC, seen=joining, memory=Memory(), actions=(waiting,), executed=None, now="T1")
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert st["phase"] == "Waiting" and st["error"] is None and degraded["status"] == "False"
    stalled = Wait(Reason.NODE_BUSY, "n2 is starting a cluster the operator did not start")
    st = build(previous={}, spec=SPEC, seen=joining, memory=Memory(), actions=(stalled,), executed=None, now="T1")
    assert st["phase"] == "Degraded" and st["error"] == stalled.message


@pytest.mark.parametrize(
    ("action", "phase"),
    [
        (Bootstrap(SPEC.nodes[0]), "Bootstrapping"),
        (Join(SPEC.nodes[1], ("127.1.0.1",)), "Joining"),
        (Remove("n2", "n1"), "Removing"),
        (Configure('{"a":1}', "n1"), "Configuring"),
    ],
)
def test_the_phase_of_a_write_is_its_own(action: Write, phase: str) -> None:
    planned = build(previous={}, spec=SPEC, seen=READY, memory=Memory(), actions=(action,), executed=None, now="T1")
    sent = build(previous={}, spec=SPEC, seen=READY, memory=Memory(), actions=(), executed=action, now="T1")
    assert planned["phase"] == sent["phase"] == phase
    assert next(c for c in sent["conditions"] if c["type"] == "Progressing")["reason"] == phase


def test_problems_are_values_rendered_once_in_order() -> None:
    split = Blocked(Reason.SPLIT_BRAIN, "several nodes answer as master (n1, n2); the operator will not choose one")
    offline = Observed(
        nodes={"n1": NodeSeen("n1", NodeKind.MASTER), "n2": NodeSeen("n2", NodeKind.UNREACHABLE, "refused; reset")},
        members=(MEMBERS[0], Member("n2", "127.1.0.2", False, False, True)),
        master="n1",
    )
    problems = problems_of(offline, (split, split), SPEC)
    assert [p.reason for p in problems] == [Reason.SPLIT_BRAIN, Reason.NODE_UNREACHABLE, Reason.NODE_OFFLINE]
    assert problems[1] == Problem(Reason.NODE_UNREACHABLE, "n2 is unreachable: refused; reset")
    st = build(previous={}, spec=SPEC, seen=offline, memory=Memory(), actions=(split, split), executed=None, now="T1")
    assert st["error"] == render_problems(problems)  # a "; " inside a message stays whole
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "SplitBrain" and type(degraded["reason"]) is str


def test_status_values_are_plain_strings_byte_for_byte() -> None:
    memory = Memory(pending=Pending("join", "n2", since=1.0))
    st = build(previous={}, spec=SPEC, seen=READY, memory=memory, actions=(), executed=None, now="T1")
    assert json.dumps(st["phase"]) == '"Joining"' and st["pending"]["op"] == "join"
    assert type(st["phase"]) is str and type(st["pending"]["op"]) is str
    assert Pending.from_status(st["pending"]) == memory.pending and memory.pending is not None
    assert memory.pending.op is Op.JOIN
