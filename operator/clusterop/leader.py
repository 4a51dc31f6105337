"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

One named Lease in the operator's namespace. A candidate acquires it when it does not exist,
when its holder is empty (released), or when the record has not changed for
`lease_duration` seconds by the candidate's own monotonic clock (never by the remote
`renewTime`: clocks of two machines are not compared). Every acquire and renew is an update
carrying the resourceVersion that was read, so two candidates can never both win.

The holder renews every `retry_period`; when no renew succeeded for `renew_deadline` it stops
leading. `holds()` is the fence the executor checks right before every manager write: true only
while less than `renew_deadline` has passed since the start of the last successful renew, which
leaves `lease_duration - renew_deadline` seconds of margin before any other candidate may take
over. Time spent stopped (SIGSTOP, a long GC pause) counts, as the clock is monotonic.
`release()` (on SIGTERM) clears holderIdentity so a successor takes over on its next try.

No kopf here: a thread, the Kube client and a clock.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import errors, metrics
from .kube import Kube

log = logging.getLogger("clusterop.leader")


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0  # client-go's defaults
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError("need lease duration > renew deadline > retry period > 0")


def default_identity() -> str:
    """POD_ID (the downward API's pod name/uid) or hostname_pid_random: unique per process."""
    return os.environ.get("POD_ID") or f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def default_namespace() -> str:
    """The pod's own namespace in a cluster; `default` outside one."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def _micro_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Campaign:
    """The loop of an election, in a thread: a step, then a wait, until stopped or released."""

    thread_name = "leader-election"
    _stop: threading.Event
    _lock: threading.Lock
    _released: bool

    def step(self) -> None:
        raise NotImplementedError

    def next_delay(self) -> float:
        raise NotImplementedError

    def run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._released:
                    return
                self.step()
            self._stop.wait(self.next_delay())

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        thread.start()
        return thread


class Elector(Campaign):
    def __init__(
        self,
        kube: Kube,
        config: LeaseConfig,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.kube, self.config, self.clock, self.wall = kube, config, clock, wall
        self.on_change = on_change
        self._leading = False
        self._renewed = float("-inf")  # monotonic start of the last successful acquire/renew
        self._observed: tuple[str, str] | None = None  # (resourceVersion, holder) last seen
        self._observed_at = float("-inf")  # monotonic time the record was last seen to change
        self._released = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.renewals = 0  # successful updates of the Lease (acquires included)
        #: leaseTransitions when this process last acquired the Lease: grows with every
        #: acquisition, so it orders terms (a fencing token the managers' request log can show)
        self.term = -1

    # -- the fence ----------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        return self._leading

    def holds(self) -> bool:
        """True while this process may write: leading and renewed less than renew_deadline ago."""
        ok = self._leading and self.clock() - self._renewed < self.config.renew_deadline
        log.debug("Fence checked leading=%s since_renew=%.3f ok=%s", self._leading, self.clock() - self._renewed, ok)
        return ok

    def claims(self, namespace: str, name: str) -> bool:
        """Every object's passes run in the leader (its writes are fenced by owns)."""
        return self._leading

    def owns(self, namespace: str, name: str) -> bool:
        """The fence for one object's manager write: the leader Lease is held with margin."""
        return self.holds()

    def describe(self) -> str:
        return "leader" if self._leading else "not leading"

    # -- one step, as client-go's tryAcquireOrRenew -------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        c = self.config
        started = self.clock()
        now = _micro_time(self.wall())
        try:
            metrics.LEASE_REQUESTS.labels("get").inc()
            lease = self.kube.lease(c.namespace, c.name)
            if lease is None:
                metrics.LEASE_REQUESTS.labels("create").inc()
                self.kube.create_lease(c.namespace, self._body(None, now, now, 0))
                self._won(started, 0)
                return True
            spec = lease.get("spec") or {}
            holder = str(spec.get("holderIdentity") or "")
            record = (str(lease["metadata"].get("resourceVersion")), holder)
            if record != self._observed:
                self._observed, self._observed_at = record, started
            held_by_other = holder and holder != c.identity
            duration = float(spec.get("leaseDurationSeconds") or c.lease_duration)
            if held_by_other and self._leading:
                self._step_down(f"the lease is held by {holder}")  # taken over while this one was away
            if held_by_other and started - self._observed_at < duration:
                return False
            if holder == c.identity and self._leading:
                acquired, transitions = spec.get("acquireTime") or now, int(spec.get("leaseTransitions") or 0)
            else:  # a new term, even when this process held it before it stepped down
                acquired, transitions = now, int(spec.get("leaseTransitions") or 0) + 1
            metrics.LEASE_REQUESTS.labels("update").inc()
            self.kube.update_lease(c.namespace, c.name, self._body(lease, acquired, now, transitions))
        except errors.KubeConflict:
            return False  # someone else wrote the Lease first
        except errors.KubeError as e:  # apiserver away, timeout, RBAC: not renewed this time
            log.info("Lease update failed lease=%s/%s error=%s", c.namespace, c.name, e)
            return False
        except Exception:  # a bug must not end the election thread: not renewed this time
            log.exception("Lease update failed unexpectedly lease=%s/%s", c.namespace, c.name)
            return False
        self._won(started, transitions)
        return True

    def _body(self, lease: dict[str, Any] | None, acquired: str, renewed: str, transitions: int) -> dict[str, Any]:
        c = self.config
        meta: dict[str, Any] = {"name": c.name, "namespace": c.namespace}
        if lease is not None:
            meta = {**lease["metadata"]}
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": c.identity,
                "leaseDurationSeconds": int(c.lease_duration) if c.lease_duration >= 1 else 1,
                "acquireTime": acquired,
                "renewTime": renewed,
                "leaseTransitions": transitions,
            },
        }

    def _won(self, started: float, transitions: int) -> None:
        self.renewals += 1
        self._renewed = started
        self._observed = None  # our own write changed the record
        if not self._leading:
            self.term = transitions
            self._leading = True
            metrics.LEADING.set(1)
            log.info(
                "Became leader lease=%s/%s identity=%s term=%d",
                self.config.namespace,
                self.config.name,
                self.config.identity,
                transitions,
            )
            if self.on_change:
                self.on_change(True)

    def _step_down(self, why: str) -> None:
        if self._leading:
            self._leading = False
            metrics.LEADING.set(0)
            log.warning("Stopped leading lease=%s/%s: %s", self.config.namespace, self.config.name, why)
            if self.on_change:
                self.on_change(False)

    # -- the loop (Campaign.run) ----------------------------------------------------------------

    def step(self) -> None:
        """Acquire or renew once; step down when renewing has failed past the deadline."""
        c = self.config
        ok = self.try_acquire_or_renew()
        if not ok and self._leading and self.clock() - self._renewed >= c.renew_deadline:
            self._step_down(f"no renew for {c.renew_deadline}s")

    def next_delay(self) -> float:
        """A leader renews every retry period (sooner if its deadline is nearer); candidates retry
        with client-go's jitter (x1.2)."""
        c = self.config
        if not self._leading:
            return c.retry_period * (1 + 0.2 * random.random())
        return min(c.retry_period, max(0.05, self._renewed + c.renew_deadline - self.clock()))

    def release(self) -> None:
        """Stop writing at once, then hand the Lease over: holder cleared, duration 1 s."""
        self._stop.set()
        was_leading = self._leading
        self._step_down("released")
        with self._lock:
            self._released = True
            if not was_leading:
                return
            c = self.config
            try:
                lease = self.kube.lease(c.namespace, c.name)
                if lease is None or (lease.get("spec") or {}).get("holderIdentity") != c.identity:
                    return
                spec = dict(lease.get("spec") or {})
                spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=_micro_time(self.wall()))
                metrics.LEASE_REQUESTS.labels("update").inc()
                self.kube.update_lease(c.namespace, c.name, {**lease, "spec": spec})
                log.info("Released lease=%s/%s identity=%s", c.namespace, c.name, c.identity)
            except errors.KubeError as e:
                log.warning("Releasing the lease failed lease=%s/%s error=%s", c.namespace, c.name, e)
            except Exception:  # on SIGTERM: the operator stops all the same
                log.exception("Releasing the lease failed unexpectedly lease=%s/%s", c.namespace, c.name)
