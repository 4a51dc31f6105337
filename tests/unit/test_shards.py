"""Sharding (clusterop.shards) against the in-memory apiserver and a hand-driven clock: each
replica holds one shard Lease, spares take over, and no object is owned by two replicas at any
instant, also while replicas of two shard counts run side by side (a rolling update)."""

from __future__ import annotations

import random
from collections import Counter
from typing import cast

import pytest

from clusterop.kube import Kube
from clusterop.leader import LeaseConfig
from clusterop.shards import Shards, lease_name, shard_of

from .fakekube import FakeKube

NAMES = [("ns", f"mc-{i}") for i in range(150)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def replica(kube: FakeKube, clock: Clock, identity: str, count: int, prefer: int | None = None) -> Shards:
    config = LeaseConfig(name="op", namespace="ns", identity=identity)  # 15 / 10 / 2 s
    return Shards(cast(Kube, kube), config, count, prefer=prefer, clock=clock)


def owners(replicas: list[Shards]) -> dict[tuple[str, str], list[str]]:
    return {key: [r.config.identity for r in replicas if r.owns(*key)] for key in NAMES}


def double_owned(replicas: list[Shards]) -> list[tuple[str, str]]:
    return [key for key, who in owners(replicas).items() if len(who) > 1]


def test_the_shard_of_an_object_is_stable_and_spread() -> None:
    assert [shard_of("ns", n, 3) for _, n in NAMES] == [shard_of("ns", n, 3) for _, n in NAMES]
    spread = Counter(shard_of("ns", n, 3) for _, n in NAMES)
    assert set(spread) == {0, 1, 2} and min(spread.values()) > 30  # 150 objects, ~50 each
    assert lease_name("op", 1, 3) == "op-1-of-3"


def test_each_replica_holds_one_shard_and_every_object_has_one_owner() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = replica(kube, clock, "a", 2), replica(kube, clock, "b", 2)
    a.step()
    b.step()
    assert {a.held, b.held} == {0, 1}
    who = owners([a, b])
    assert all(len(w) == 1 for w in who.values())
    assert all(w == (["a"] if shard_of(*key, 2) == a.held else ["b"]) for key, w in who.items())
    assert kube.objects[("lease", "ns", lease_name("op", a.held, 2))]["spec"]["holderIdentity"] == "a"


def test_the_fence_needs_a_listing_after_the_acquisition_and_a_recent_one() -> None:
    kube, clock = FakeKube(), Clock()
    a = replica(kube, clock, "a", 2, prefer=1)
    kube.down = False
    a.step()
    key = next(k for k in NAMES if shard_of(*k, 2) == 1)
    other = next(k for k in NAMES if shard_of(*k, 2) == 0)
    assert a.held == 1 and a.owns(*key) and not a.owns(*other) and a.claims(*key)
    real = kube.leases
    kube.leases = lambda ns: (_ for _ in ()).throw(ConnectionError("down"))  # type: ignore[method-assign]
    for _ in range(4):  # renewed every 2 s, but not listed: the fence lapses at the renew deadline
        clock.now += 2.6
        a.step()
    assert a.held == 1 and a.claims(*key) and not a.owns(*key)
    kube.leases = real  # type: ignore[method-assign]
    a.step()
    assert a.owns(*key)


def test_a_spare_takes_over_the_shard_of_a_replica_that_died() -> None:
    kube, clock = FakeKube(), Clock()
    a, b, spare = replica(kube, clock, "a", 2, 0), replica(kube, clock, "b", 2, 1), replica(kube, clock, "c", 2)
    for r in (a, b, spare):
        r.step()
    assert (a.held, b.held, spare.held) == (0, 1, None)
    for _ in range(8):  # a stops (SIGKILL): b renews, the spare watches a's Lease unchanged
        clock.now += 2
        b.step()
        spare.step()
        assert not double_owned([a, b, spare])
    assert spare.held == 0 and b.held == 1
    assert all(len(w) == 1 for w in owners([b, spare]).values())


def test_a_released_shard_is_taken_at_the_spares_next_try() -> None:
    kube, clock = FakeKube(), Clock()
    a, spare = replica(kube, clock, "a", 2, 0), replica(kube, clock, "c", 2, 0)
    b = replica(kube, clock, "b", 2, 1)
    for r in (a, b, spare):
        r.step()
    a.release()
    assert a.held is None and not any(a.owns(*k) for k in NAMES)
    clock.now += 2
    spare.step()
    assert spare.held == 0


@pytest.mark.parametrize("seed", range(20))
def test_a_rolling_change_of_the_shard_count_never_owns_an_object_twice(seed: int) -> None:
    """2 replicas of 2 shards, then 3 of 3 started beside them in a random order, then the old
    ones stopped (released or killed); every replica steps at random instants. At every instant
    no object has two owners; at the end the new replicas own every object."""
    rng = random.Random(seed)
    kube, clock = FakeKube(), Clock()
    old = [replica(kube, clock, f"old{i}", 2) for i in range(2)]
    for r in old:
        r.step()
    new = [replica(kube, clock, f"new{i}", 3) for i in range(3)]
    live = list(old)
    pending = list(new)
    rng.shuffle(pending)
    killed: set[str] = set()
    for tick in range(200):
        clock.now += rng.uniform(0.05, 0.6)
        if pending and rng.random() < 0.1:
            live.append(pending.pop())
        if tick > 60 and any(r in live for r in old) and rng.random() < 0.05:
            gone = next(r for r in old if r in live)
            live.remove(gone)
            if rng.random() < 0.5:
                gone.release()
            else:
                killed.add(gone.config.identity)  # its Lease expires by itself
        r = rng.choice(live)
        r.step()
        assert not double_owned(live), (tick, [(x.config.identity, x.held, x._foreign) for x in live])
    live += pending
    for _ in range(20):  # the old ones are gone: their Leases released or expired
        clock.now += 2
        for r in live:
            if r not in old:
                r.step()
        assert not double_owned(live)
    live = [r for r in live if r not in old]
    assert all(len(w) == 1 for w in owners(live).values()), owners(live)


def test_while_the_old_count_runs_the_overlap_waits() -> None:
    kube, clock = FakeKube(), Clock()
    a = replica(kube, clock, "a", 2, 0)  # shards of 2
    a.step()
    c = replica(kube, clock, "c", 3, 0)  # a newer count beside it
    c.step()
    both = [k for k in NAMES if shard_of(*k, 2) == 0 and shard_of(*k, 3) == 0]
    only_c = [k for k in NAMES if shard_of(*k, 2) != 0 and shard_of(*k, 3) == 0]
    assert both and only_c
    assert not any(c.owns(*k) for k in both)  # c saw a's Lease on its first listing
    assert all(a.owns(*k) for k in both)  # a has not listed since: it still owns them
    assert all(c.owns(*k) for k in only_c)
    clock.now += 2
    a.step()  # a sees c's Lease: the overlap is nobody's until one of them goes
    assert not any(a.owns(*k) or c.owns(*k) for k in both)
    a.release()
    clock.now += 2
    c.step()
    assert all(c.owns(*k) for k in both)


def test_a_shard_index_beyond_the_count_is_refused() -> None:
    with pytest.raises(ValueError, match="not below"):
        replica(FakeKube(), Clock(), "a", 2, prefer=2)


def test_a_listing_made_for_another_shard_does_not_count_for_a_new_one() -> None:
    kube, clock = FakeKube(), Clock()
    a = replica(kube, clock, "a", 2, prefer=1)
    a.step()
    assert a.held == 1
    kube.objects[("lease", "ns", "op-1-of-2")]["spec"]["holderIdentity"] = "x"  # taken over meanwhile
    kube.leases = lambda ns: (_ for _ in ()).throw(ConnectionError("down"))  # type: ignore[method-assign]
    clock.now += 2
    a.step()  # steps down from 1, acquires 0, but cannot list
    assert a.held == 0
    key = next(k for k in NAMES if shard_of(*k, 2) == 0)
    assert a.claims(*key) and not a.owns(*key)  # the listing of 2 s ago was made while holding shard 1


def test_the_command_line_implies_leader_election_and_checks_the_index(capsys: pytest.CaptureFixture[str]) -> None:
    from clusterop.cli import parse_args

    args = parse_args(["--all-namespaces", "--shards", "3", "--shard-index", "2"])
    assert args.leader_elect and args.shards == 3 and args.shard_index == 2
    assert not parse_args(["--all-namespaces"]).leader_elect
    refused = [(["--shards", "2", "--shard-index", "2"], "not below --shards 2"), (["--shards", "0"], "at least 1")]
    for bad, why in refused:
        with pytest.raises(SystemExit):
            parse_args(["--all-namespaces", *bad])
        assert why in capsys.readouterr().err
