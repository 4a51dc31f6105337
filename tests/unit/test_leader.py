"""Leader election on a Lease (clusterop.leader), against an in-memory apiserver with
resourceVersion conflicts and a hand-driven monotonic clock."""

from __future__ import annotations

from typing import Any, cast

import pytest

from clusterop.kube import Kube
from clusterop.leader import Elector, LeaseConfig

from .fakekube import FakeKube


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(kube: FakeKube, clock: Clock, identity: str) -> Elector:
    config = LeaseConfig(name="op", namespace="ns", identity=identity)  # client-go's 15 / 10 / 2 s
    return Elector(cast(Kube, kube), config, clock=clock)


def lease(kube: FakeKube) -> dict[str, Any]:
    return dict(kube.objects[("lease", "ns", "op")]["spec"])


def test_first_candidate_creates_the_lease_and_the_other_waits_for_it_to_expire() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    assert a.try_acquire_or_renew() and a.holds()
    assert lease(kube)["holderIdentity"] == "a" and lease(kube)["leaseDurationSeconds"] == 15
    assert not b.try_acquire_or_renew() and not b.leading
    clock.now += 14.9  # a has not renewed, but b has only watched the record for 14.9 s
    assert not b.try_acquire_or_renew()
    assert not a.holds()  # past its renew deadline a writes nothing, though it still "leads"
    clock.now += 0.2
    assert b.try_acquire_or_renew() and b.holds()
    assert lease(kube)["holderIdentity"] == "b" and lease(kube)["leaseTransitions"] == 1
    assert (a.term, b.term) == (0, 1)  # terms order the leaders (the managers' log shows them)


def test_renewals_keep_the_lease_and_the_fence_follows_the_last_renew() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    for _ in range(20):  # 40 s of renewals every 2 s: b never gets it
        clock.now += 2
        assert a.try_acquire_or_renew() and a.holds()
        assert not b.try_acquire_or_renew()
    clock.now += 9.9
    assert a.holds()
    clock.now += 0.2  # no renew for 10.1 s (a SIGSTOP, a partition): the fence is down at once
    assert not a.holds()


def test_a_renew_that_lost_the_race_is_not_a_renew() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b starts watching the record
    clock.now += 16
    assert b.try_acquire_or_renew()  # a was silent past the duration (paused): b took it
    clock.now += 0.1
    assert not a.try_acquire_or_renew()  # a resumes: the Lease is b's now, a gets nothing
    assert lease(kube)["holderIdentity"] == "b"
    assert not a.holds() and not a.leading  # and a steps down at once on seeing it


def test_two_candidates_at_the_same_instant_only_one_wins() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")

    # b reads "no lease" too, but a's create lands first: b's create conflicts.
    def a_first() -> None:
        kube.before_write = None
        a.try_acquire_or_renew()

    kube.before_write = a_first
    assert not b.try_acquire_or_renew()
    assert a.holds() and not b.leading
    assert lease(kube)["holderIdentity"] == "a"


def test_release_hands_over_at_once() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert not a.holds() and not a.leading
    assert lease(kube)["holderIdentity"] == "" and lease(kube)["leaseDurationSeconds"] == 1
    assert b.try_acquire_or_renew() and b.holds()
    assert b.term == 1 and lease(kube)["leaseTransitions"] == 1  # a released Lease starts a new term too


def test_apiserver_away_counts_against_the_deadline() -> None:
    kube, clock = FakeKube(), Clock()
    a = elector(kube, clock, "a")
    a.try_acquire_or_renew()
    kube.down = True
    clock.now += 5
    assert not a.try_acquire_or_renew()
    assert a.holds()  # 5 s without renew: still within the deadline
    clock.now += 5
    assert not a.holds()


def test_bad_timings_are_refused() -> None:
    with pytest.raises(ValueError):
        LeaseConfig(name="op", namespace="ns", identity="a", lease_duration=10, renew_deadline=10)
