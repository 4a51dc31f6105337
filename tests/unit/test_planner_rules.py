"""The planner's rules one by one, as a table: for each situation, the actions it plans, read
as people read them (`describe()`) with their reasons. Each row is the one rule that decides it,
so deleting or bending a rule changes a row."""

from __future__ import annotations

from typing import Any

import pytest

from clusterop import planner
from clusterop.model import Bootstrap, Member, Memory, NodeSeen, NodeSpec, Observed, Pending

from .test_planner import INIT, NOW, A, D, F, M, R, U, X, applied, seen, spec

S3 = spec("n1", "n2", "n3")
S2 = spec("n1", "n2")
ADDR = {n: (f"127.1.0.{n[1:]}", f"http://127.0.0.1:{9000 + int(n[1:])}") for n in ("n1", "n2", "n3", "n4")}


def pending(op: str, node: str, age: float = 0.0, attempts: int = 1) -> Memory:
    return Memory(pending=Pending(op, node, *ADDR[node], since=NOW - age, attempts=attempts))


def with_hash(m: Memory, s: Any) -> Memory:
    return Memory(pending=m.pending, applied_config_hash=s.config_hash)


def said(actions: tuple[Any, ...]) -> list[tuple[str, str]]:
    return [(str(getattr(a, "reason", type(a).__name__.lower())), a.describe()) for a in actions]


FORMED2 = {"n1": True, "n2": True}

CASES: list[tuple[str, Any, Observed, Memory, list[tuple[str, str]]]] = [
    (
        "credentials refused anywhere blocks everything",
        S3,
        seen({"n1": M, "n2": A, "n3": A}, FORMED2),
        applied(S3),
        [
            (
                "CredentialsRejected",
                "blocked: the managers refused the admin credentials of Secret c (boom); nodes: n2, n3",
            )
        ],
    ),
    (
        "two masters",
        S3,
        seen({"n1": M, "n2": M, "n3": U}),
        applied(S3),
        [("SplitBrain", "blocked: several nodes answer as master (n1, n2); the operator will not choose one")],
    ),
    (
        "master without its node list",
        S3,
        seen({"n1": M, "n2": R, "n3": U}),
        applied(S3),
        [("MasterUnreachable", "wait: the node list of master n1 could not be read")],
    ),
    (
        "fresh nodes: bootstrap the first",
        S3,
        seen({"n1": U, "n2": U, "n3": U}),
        Memory(),
        [("bootstrap", "bootstrap the cluster on n1")],
    ),
    (
        "one node cannot be asked: no bootstrap",
        S3,
        seen({"n1": U, "n2": D, "n3": U}),
        Memory(),
        [("NodeUnreachable", "wait: not bootstrapping while n2 cannot be asked: it may already belong to a cluster")],
    ),
    (
        "a node never asked counts as unreachable",
        S3,
        Observed(nodes={"n1": NodeSeen("n1", U), "n2": NodeSeen("n2", U)}),
        Memory(),
        [("NodeUnreachable", "wait: not bootstrapping while n3 cannot be asked: it may already belong to a cluster")],
    ),
    (
        "a node starting a cluster nobody asked for",
        S3,
        seen({"n1": U, "n2": INIT, "n3": U}),
        Memory(),
        [("NodeBusy", "wait: n2 is starting a cluster the operator did not start")],
    ),
    (
        "a failed node nobody asked",
        S3,
        seen({"n1": U, "n2": U, "n3": F}),
        Memory(),
        [("NodeFailed", "blocked: n3 reports a failed cluster operation the operator did not start: boom")],
    ),
    (
        "only removed nodes: nothing but CannotRejoin",
        spec("n1"),
        seen({"n1": X}),
        Memory(),
        [
            (
                "CannotRejoin",
                "blocked: n1 was removed from the cluster and can never rejoin it: "
                "take it out of spec.nodes or give it a fresh manager",
            )
        ],
    ),
    (
        "replicas without a master wait for the failover",
        S3,
        seen({"n1": D, "n2": R, "n3": R}),
        applied(S3),
        [("NoMaster", "wait: no node answers as master (replicas: n2, n3); waiting for the failover")],
    ),
    (
        "a join in flight and no master answering",
        S3,
        seen({"n1": D, "n2": D, "n3": U}),
        pending("join", "n3"),
        [("NoMaster", "wait: no node answers as master (replicas: none answering); waiting for the failover")],
    ),
    (
        "a removed master: wait for the election",
        S2,
        seen({"n1": R, "n2": R, "n3": X}),
        pending("remove", "n3"),
        [("Electing", "wait: n3 was removed; waiting for the cluster to elect a new master")],
    ),
    (
        "bootstrap in flight, node busy",
        S3,
        seen({"n1": INIT, "n2": U, "n3": U}),
        pending("bootstrap", "n1"),
        [("Bootstrapping", "wait: n1: bootstrap in progress")],
    ),
    (
        "bootstrap left no trace yet",
        S3,
        seen({"n1": U, "n2": U, "n3": U}),
        pending("bootstrap", "n1", age=planner.RESEND_AFTER - 1),
        [("Bootstrapping", "wait: n1: waiting for the bootstrap to show")],
    ),
    (
        "bootstrap left no trace: resent to the same node",
        S3,
        seen({"n1": U, "n2": U, "n3": U}),
        pending("bootstrap", "n2", age=planner.RESEND_AFTER),
        [("bootstrap", "bootstrap the cluster on n2")],
    ),
    (
        "bootstrap failed: retry after the backoff",
        S3,
        seen({"n1": F, "n2": U, "n3": U}),
        pending("bootstrap", "n1", age=7, attempts=2),
        [("BootstrapFailed", "wait: bootstrap of n1 failed (boom); retrying in 3s")],
    ),
    (
        "bootstrap failed, backoff over",
        S3,
        seen({"n1": F, "n2": U, "n3": U}),
        pending("bootstrap", "n1", age=10, attempts=2),
        [("bootstrap", "bootstrap the cluster on n1")],
    ),
    (
        "bootstrapped node removed",
        S3,
        seen({"n1": X, "n2": U, "n3": U}),
        pending("bootstrap", "n1"),
        [
            ("CannotRejoin", "blocked: n1 was removed from the cluster"),
            (
                "CannotRejoin",
                "blocked: n1 was removed from the cluster and can never rejoin it: "
                "take it out of spec.nodes or give it a fresh manager",
            ),
        ],
    ),
    (
        "bootstrapped node cannot be asked",
        S3,
        seen({"n1": D, "n2": U, "n3": U}),
        pending("bootstrap", "n1"),
        [("NodeUnreachable", "wait: n1 cannot be asked how its bootstrap went")],
    ),
    (
        "bootstrap in flight, master found",
        S3,
        seen({"n1": M, "n2": U, "n3": U}, {"n1": True}),
        pending("bootstrap", "n1"),
        [("Bootstrapping", "wait: n1: bootstrap in progress")],
    ),
    (
        "join in flight, replica not yet online",
        S3,
        seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": False}),
        pending("join", "n3"),
        [("Joining", "wait: n3 joined; waiting until the master lists it online")],
    ),
    (
        "join resent when it left no trace",
        S3,
        seen({"n1": M, "n2": R, "n3": U}, FORMED2),
        pending("join", "n3", age=planner.RESEND_AFTER),
        [("join", "join n3 via 127.1.0.1,127.1.0.2")],
    ),
    (
        "a joining node that left the spec",
        S2,
        seen({"n1": M, "n2": R, "n3": INIT}, FORMED2),
        pending("join", "n3"),
        [("Joining", "wait: n3 left the spec while joining; waiting for the join to settle")],
    ),
    (
        "a removal in flight",
        S2,
        seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": True}),
        pending("remove", "n3", age=planner.RESEND_AFTER - 1),
        [("Removing", "wait: n3: removal in progress")],
    ),
    (
        "a removal resent after a while",
        S2,
        seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": True}),
        pending("remove", "n3", age=planner.RESEND_AFTER),
        [("remove", "remove n3 through n1")],
    ),
    (
        "a node being removed wanted again",
        S3,
        seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": True}),
        pending("remove", "n3", age=100),
        [("Removing", "wait: n3 is wanted again; waiting to see whether its removal landed")],
    ),
    (
        "missing nodes: join the fresh, report the rest",
        spec("n1", "n2", "n3", "n4", "n5", "n6"),
        Observed(
            nodes={
                "n1": NodeSeen("n1", M),
                "n2": NodeSeen("n2", U),
                "n3": NodeSeen("n3", INIT),
                "n4": NodeSeen("n4", F, "bad disk"),
                "n5": NodeSeen("n5", R),
                "n6": NodeSeen("n6", D, "refused"),
            },
            members=(Member("n1", "127.1.0.1", True, True, True),),
            master="n1",
        ),
        Memory(),
        [
            ("join", "join n2 via 127.1.0.1"),
            ("NodeBusy", "wait: n3 is starting or joining; the operator did not ask it to"),
            ("NodeFailed", "blocked: n4 reports a failed cluster operation: bad disk"),
            ("ForeignCluster", "blocked: n5 belongs to another cluster than n1's"),
            ("NodeUnreachable", "wait: cannot join n6: refused"),
        ],
    ),
    (
        "a missing node never asked",
        S2,
        Observed(nodes={"n1": NodeSeen("n1", M)}, members=(Member("n1", "127.1.0.1", True, True, True),), master="n1"),
        applied(S2),
        [("NodeUnreachable", "wait: cannot join n2: not asked")],
    ),
    (
        "the replica goes before the master; names in order",
        spec("n9"),
        Observed(
            nodes={"n9": NodeSeen("n9", R), "n1": NodeSeen("n1", M), "n3": NodeSeen("n3", R), "n2": NodeSeen("n2", R)},
            members=(
                Member("n1", "127.1.0.1", True, True, True),
                Member("n3", "127.1.0.3", True, False, True),
                Member("n2", "127.1.0.2", True, False, True),
                Member("n9", "127.1.0.9", True, False, True),
            ),
            master="n1",
        ),
        Memory(applied_config_hash=spec("n9").config_hash),
        [("remove", "remove n2 through n1")],
    ),
    (
        "the master goes when a wanted member can take over",
        S2,
        Observed(
            nodes={"n1": NodeSeen("n1", R), "n2": NodeSeen("n2", R), "n3": NodeSeen("n3", M)},
            members=(
                Member("n3", "127.1.0.3", True, True, True),
                Member("n1", "127.1.0.1", True, False, True),
                Member("n2", "127.1.0.2", True, False, True),
            ),
            master="n3",
        ),
        applied(S2),
        [("remove", "remove n3 through n3")],
    ),
    (
        "never the last node, even when the spec wants another",
        spec("n2"),
        seen({"n1": M, "n2": D}, {"n1": True}),
        applied(spec("n2")),
        [
            ("LastNode", "blocked: n1 is the last node of the cluster; it is never removed"),
            ("NodeUnreachable", "wait: cannot join n2: boom"),
        ],
    ),
    (
        "a removal waits while another member is offline",
        S2,
        seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": False, "n3": True}),
        applied(S2),
        [("MemberOffline", "blocked: not removing n3 while n2 is offline")],
    ),
    (
        "the dropped node itself being offline does not hold its removal",
        S2,
        seen({"n1": M, "n2": R, "n3": D}, {"n1": True, "n2": True, "n3": False}),
        applied(S2),
        [("remove", "remove n3 through n1")],
    ),
    (
        "config differs: apply it through the master",
        spec("n1", config={"x": 1}),
        seen({"n1": M}, {"n1": True}),
        Memory(),
        [("configure", f"apply config {spec('n1', config={'x': 1}).config_hash} on n1")],
    ),
    (
        "a formed cluster with its config: nothing to do",
        S2,
        seen({"n1": M, "n2": R}, FORMED2),
        applied(S2),
        [],
    ),
]


@pytest.mark.parametrize(("situation", "s", "o", "memory", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rule(situation: str, s: Any, o: Observed, memory: Memory, expected: list[tuple[str, str]]) -> None:
    assert said(planner.plan(s, o, memory, NOW)) == expected


def test_retry_delay_doubles_up_to_five_minutes() -> None:
    assert [planner.retry_delay(a) for a in (0, 1, 2, 3, 4, 7, 20)] == [5.0, 5.0, 10.0, 20.0, 40.0, 300.0, 300.0]


def test_settle_clears_a_write_once_its_outcome_shows() -> None:
    formed = seen({"n1": M, "n2": R}, FORMED2)
    assert planner.settle(None, formed) is None
    boot = Pending("bootstrap", "n1")
    assert planner.settle(boot, formed) is None
    assert planner.settle(boot, seen({"n1": INIT})) == boot
    assert planner.settle(boot, seen({"n1": R}, {"n1": True}, master="n9")) is None  # listed as a member
    join = Pending("join", "n2")
    assert planner.settle(join, formed) is None
    assert planner.settle(join, seen({"n1": M, "n2": R}, {"n1": True, "n2": False})) == join
    assert planner.settle(join, seen({"n1": M, "n2": U}, {"n1": True, "n2": True})) == join
    assert planner.settle(join, seen({"n1": M, "n2": M}, {"n1": True, "n2": True}, master="n1")) is None
    fast = Observed(nodes={}, members=None, master="n1", fast=True)
    assert planner.settle(join, fast) == join
    remove = Pending("remove", "n2")
    assert planner.settle(remove, seen({"n1": M}, {"n1": True})) is None
    assert planner.settle(remove, formed) == remove
    assert planner.settle(remove, seen({"n1": D, "n2": X})) == remove  # no master list yet


def test_deletion_keeps_the_master_and_says_when_it_is_done() -> None:
    three = seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": True})
    assert said(planner.plan_deletion(S3, three, applied(S3), NOW)) == [("remove", "remove n2 through n1")]
    changed = spec("n1", "n2", "n3", config={"x": 1})
    assert said(planner.plan_deletion(changed, three, applied(S3), NOW)) == [("remove", "remove n2 through n1")]
    alone = seen({"n1": M}, {"n1": True})
    assert planner.plan_deletion(S3, alone, applied(S3), NOW) == ()
    assert planner.deletion_finished(alone, None) == "removed every node but the last (n1), which is never removed"
    assert planner.deletion_finished(alone, Pending("remove", "n2")) is None
    assert planner.deletion_finished(three, None) is None
    assert (
        planner.deletion_finished(seen({"n1": U, "n2": D}), None)
        == "no cluster found on the managers; nothing to remove"
    )
    assert planner.deletion_finished(seen({"n1": D, "n2": R}), None) is None
    # a master outside the spec (scaled away earlier) keeps its remembered endpoint
    other = seen({"n4": M, "n1": R}, {"n4": True, "n1": True})
    assert said(planner.plan_deletion(S2, other, Memory(endpoints={"n4": "http://x"}), NOW)) == [
        ("remove", "remove n1 through n4")
    ]
    fresh = seen({"n1": U, "n2": U})
    assert planner.plan_deletion(S2, fresh, Memory(), NOW) == ()  # never a bootstrap on delete


def test_deletion_without_a_known_master_keeps_the_waits_and_writes_nothing() -> None:
    """No master to remove through: the deletion says why it waits (as a plan would), never a write."""
    unsure = seen({"n1": D, "n2": U})
    assert said(planner.plan_deletion(S2, unsure, Memory(), NOW)) == said(planner.plan(S2, unsure, Memory(), NOW))
    assert said(planner.plan_deletion(S2, unsure, Memory(), NOW)) == [
        ("NodeUnreachable", "wait: not bootstrapping while n1 cannot be asked: it may already belong to a cluster")
    ]


def test_deletion_resends_a_removal_only_once_it_is_overdue() -> None:
    """A removal in flight is waited for while young and sent again once RESEND_AFTER has passed
    (the deletion plans with the pass's clock)."""
    three = seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": True, "n3": True})
    young = pending("remove", "n2", age=1)
    overdue = pending("remove", "n2", age=planner.RESEND_AFTER + 1)
    assert said(planner.plan_deletion(S3, three, young, NOW)) == [("Removing", "wait: n2: removal in progress")]
    assert said(planner.plan_deletion(S3, three, overdue, NOW)) == [("remove", "remove n2 through n1")]


def test_a_remembered_bootstrap_is_resent_to_the_address_it_was_sent_to() -> None:
    """The spec no longer lists the node a bootstrap went to: an overdue resend still goes to that
    node, at the host_ip and endpoint the intent recorded (never to the spec's first node)."""
    m = pending("bootstrap", "n3", age=planner.RESEND_AFTER + 1)
    (action,) = planner.plan(S2, seen({"n1": U, "n2": U, "n3": U}), m, NOW)
    assert action == Bootstrap(NodeSpec("n3", *ADDR["n3"]), retry=True)


def test_what_stops_a_pass_names_every_node_and_the_node_it_is_about() -> None:
    """Messages list every node concerned; a Blocked removal carries the node its row shows it on."""
    assert said(planner.plan(S3, seen({"n1": U, "n2": D, "n3": D}), Memory(), NOW)) == [
        ("NodeUnreachable", "wait: not bootstrapping while n2, n3 cannot be asked: it may already belong to a cluster")
    ]
    o = seen({"n1": M, "n2": R, "n3": R}, {"n1": True, "n2": False, "n3": True})
    (held,) = planner.plan(S2, o, applied(S2), NOW)
    assert (held.reason, held.node) == ("MemberOffline", "n3")
