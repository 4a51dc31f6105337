"""Sharding (--shards N): N Leases, one per shard; each replica holds at most one of them and
reconciles the ManagerClusters whose stable hash falls in its shard.

* An object's shard is `blake2b(namespace/name) mod N`: the same in every process and restart.
* The shard Leases are `<lease>-<i>-of-<N>`; each is elected as the single leader Lease is
  (leader.Elector: resourceVersion-checked updates, the holder's own monotonic clock, the
  renew-deadline fence). A replica that holds none tries them in turn, starting at its preferred
  shard (`--shard-index`, a StatefulSet's ordinal) or at one its identity hashes to: replicas
  beyond N are spares that take over the shard of one that died, a lease duration later.
* Rebalancing (N changed by a rolling update, so replicas of two counts run side by side): after
  every renew, the holder lists the namespace's Leases. An object is owned only when no live
  Lease of another count, held by someone else, covers it too. Of two replicas whose shards
  overlap, the one that acquired later sees the earlier one's Lease on its first listing (which
  starts after its own acquisition), so it never acts before the earlier one steps back; the
  earlier one sees the later one on its next listing and steps back too. The overlap then waits
  until the replicas of the old count stop (their Leases are released, or unchanged for their
  duration): never owned twice, at worst owned by nobody for the roll's length.
* The fence before each manager write (owns) needs the shard's Lease renewed less than the renew
  deadline ago and a listing started after the acquisition and less than the renew deadline ago.

No kopf here: a thread, the Kube client and a clock, as leader.py.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from .kube import Kube
from .leader import Campaign, Elector, LeaseConfig

log = logging.getLogger("clusterop.shards")


def shard_of(namespace: str, name: str, count: int) -> int:
    """The object's shard among `count`: stable across processes and restarts."""
    digest = hashlib.blake2b(f"{namespace}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def lease_name(base: str, index: int, count: int) -> str:
    return f"{base}-{index}-of-{count}"


class Shards(Campaign):
    """The shard Leases of one replica; the same face as leader.Elector to the CLI."""

    thread_name = "shard-election"

    def __init__(
        self,
        kube: Kube,
        config: LeaseConfig,
        count: int,
        prefer: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("need at least one shard")
        if prefer is not None and not 0 <= prefer < count:
            raise ValueError(f"shard index {prefer} is not below the shard count {count}")
        self.kube, self.config, self.count, self.clock = kube, config, count, clock
        self.on_change = on_change
        self.electors = [
            Elector(kube, replace(config, name=lease_name(config.name, i, count)), clock=clock) for i in range(count)
        ]
        start = prefer if prefer is not None else shard_of("", config.identity, count)
        self.order = [(start + k) % count for k in range(count)]
        self.held: int | None = None
        #: monotonic start of the last successful listing since the held shard was acquired
        self._listed = float("-inf")
        #: Leases of other counts, live by this process's observation: name -> (rv, holder, seen at)
        self._seen: dict[str, tuple[str, str, float]] = {}
        self._foreign: tuple[tuple[int, int], ...] = ()  # (index, count) of the live ones
        self._name = re.compile(rf"^{re.escape(config.name)}-(\d+)-of-(\d+)$")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._released = False

    # -- the fence ----------------------------------------------------------------------------

    @property
    def term(self) -> int:
        return self.electors[self.held].term if self.held is not None else -1

    def holds(self) -> bool:
        """Holds a shard Lease with margin, and has listed the others since and lately."""
        held = self.held
        if held is None or not self.electors[held].holds():
            return False
        return self.clock() - self._listed < self.config.renew_deadline

    def claims(self, namespace: str, name: str) -> bool:
        """The object's passes run here: its shard is held, and no live Lease of another count,
        held by another replica, covers it."""
        held = self.held
        if held is None or shard_of(namespace, name, self.count) != held:
            return False
        return not any(shard_of(namespace, name, n) == i for i, n in self._foreign)

    def owns(self, namespace: str, name: str) -> bool:
        """The fence for one object's manager write: claims, and holds (renewed and listed with
        margin)."""
        return self.claims(namespace, name) and self.holds()

    def describe(self) -> str:
        return "no shard" if self.held is None else f"shard {self.held} of {self.count}"

    # -- one step -------------------------------------------------------------------------------

    def step(self) -> None:
        """Renew the held shard (or try the others in turn), then list the Leases."""
        before = (self.held, self._foreign)
        if self.held is not None:
            e = self.electors[self.held]
            e.step()  # renews, or steps down past the renew deadline
            if not e.leading:
                log.warning("Lost %s lease=%s", self.describe(), e.config.name)
                self.held = None
        if self.held is None:
            for i in self.order:
                if self.electors[i].try_acquire_or_renew():
                    self._listed = float("-inf")  # listed only after this; before `held` (read by the loop)
                    self.held = i
                    log.info("Holding shard %d of %d identity=%s", i, self.count, self.config.identity)
                    break
        if self.held is not None:
            self._list()
        if (self.held, self._foreign) != before and self.on_change is not None:
            self.on_change(self.held is not None)

    def _list(self) -> None:
        started = self.clock()
        try:
            leases = self.kube.leases(self.config.namespace)
        except Exception as e:  # not listed this time: the fence lapses after the renew deadline
            log.info("Listing the shard leases failed namespace=%s error=%s", self.config.namespace, e)
            return
        seen: dict[str, tuple[str, str, float]] = {}
        foreign = []
        for lease in leases:
            meta, spec = lease.get("metadata") or {}, lease.get("spec") or {}
            match = self._name.match(str(meta.get("name") or ""))
            if match is None or int(match.group(2)) == self.count:
                continue  # not a shard lease, or one of our own count (never overlaps ours)
            holder = str(spec.get("holderIdentity") or "")
            record = (str(meta.get("resourceVersion")), holder)
            name = str(meta["name"])
            last = self._seen.get(name)
            since = last[2] if last is not None and last[:2] == record else started
            seen[name] = (*record, since)
            duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
            if holder and holder != self.config.identity and started - since < duration:
                foreign.append((int(match.group(1)), int(match.group(2))))
        foreign_now = tuple(sorted(foreign))
        if foreign_now != self._foreign:  # said on a change, not on every listing
            log.info("Leases of another shard count live: %s", foreign_now or "none")
        self._seen, self._foreign, self._listed = seen, foreign_now, started

    # -- the loop (Campaign.run) ----------------------------------------------------------------

    def next_delay(self) -> float:
        if self.held is not None:
            return self.electors[self.held].next_delay()
        return self.config.retry_period * (1 + 0.2 * random.random())

    def release(self) -> None:
        """On SIGTERM: stop writing at once and hand the held shard over."""
        self._stop.set()
        with self._lock:
            self._released = True
            held, self.held = self.held, None
        if held is not None:
            self.electors[held].release()
