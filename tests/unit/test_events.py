"""Which Events a pass posts besides its writes' own (clusterop.events): pure functions."""

from __future__ import annotations

from clusterop import events
from clusterop.errors import InvalidSpec, Refusal
from clusterop.model import Event, Problem, Reason

OFF = Problem(Reason.NODE_OFFLINE, "n2 is offline in the master's node list")
BUSY = Problem(Reason.NODE_BUSY, "n3 is starting a cluster the operator did not start")


def test_only_new_problems_are_posted_under_the_worst_reason() -> None:
    assert events.new_problems(frozenset(), [OFF, BUSY], paused=False) == [
        Event("Warning", "NodeOffline", f"{OFF.message}; {BUSY.message}")
    ]
    assert events.new_problems(frozenset({OFF}), [OFF, BUSY], paused=False) == [
        Event("Warning", "NodeOffline", BUSY.message)
    ]
    assert events.new_problems(frozenset({OFF, BUSY}), [BUSY, OFF], paused=False) == []


def test_a_paused_clusters_problems_are_normal_events() -> None:
    assert [e.type for e in events.new_problems(frozenset(), [OFF], paused=True)] == ["Normal"]


def test_a_refusal_is_posted_once_per_message() -> None:
    e = InvalidSpec(Refusal.SECRET_MISSING, "Secret ns/k (encryptionKeySecretRef) does not exist yet")
    assert events.refused({}, e) == [Event("Warning", "SecretMissing", e.message)]
    assert events.refused({"error": e.message}, e) == []


def test_ready_is_posted_on_the_transition_only() -> None:
    assert events.became_ready({"phase": "Joining"}, {"phase": "Ready"}, 3) == [
        Event("Normal", "Ready", "All 3 nodes are members and online")
    ]
    assert events.became_ready({"phase": "Ready"}, {"phase": "Ready"}, 3) == []
