"""The one executor: every manager write (start, join, config PATCH, removal, deletion's removals)
goes through `Executor.execute`, and nothing else in the operator writes to a manager.

For each write, in this order:
  1. the fence: this process holds the leader Lease, or the object's shard Lease, with margin
     (`fence(ns, name)`), else nothing is sent;
  2. the intent, recorded in status as a compare-and-swap on the object's resourceVersion (a
     merge patch carrying metadata.resourceVersion): a 409 means someone else moved since this
     pass observed, so nothing is sent and the next pass observes again;
  3. failpoint `before-write`, the fence again (a pause between 1 and here counts), the request;
  4. failpoint `after-write`.
The result is typed: sent or held back (and why), the new memory, events, the written status.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import errors, failpoints
from .client import Connection, ManagerClient
from .kube import Kube
from .model import Bootstrap, ClusterSpec, Configure, Event, Join, Memory, Op, Pending, Phase, Reason, Remove, Write

log = logging.getLogger("clusterop.executor")


class Held(enum.StrEnum):
    NOT_LEADER = "NotLeader"  # the Lease is not held with margin: nothing may be sent
    CONFLICT = "Conflict"  # the intent's compare-and-swap lost: someone else moved


@dataclass(frozen=True)
class Result:
    memory: Memory
    sent: bool = False  # the request left (it may have landed even when it failed)
    held: Held | None = None
    events: tuple[Event, ...] = ()
    written: dict[str, Any] | None = None  # status as the intent write left it
    resource_version: str | None = None  # of the object after the intent write
    body: dict[str, Any] | None = None  # the object as the intent write left it
    failed: bool = False  # the manager answered with an error, or did not answer


@dataclass
class Executor:
    kube: Kube
    client: Callable[[str, Connection], ManagerClient]  # endpoint, connection -> client
    fence: Callable[[str, str], bool] = lambda ns, name: True  # (namespace, name): may write
    clock: Callable[[], float] = time.time
    counts: dict[str, int] = field(default_factory=dict)  # held-back writes by reason (tests, metrics)

    def execute(
        self,
        ns: str,
        name: str,
        resource_version: str | None,
        spec: ClusterSpec,
        memory: Memory,
        conn: Connection,
        key: str,
        action: Write,
    ) -> Result:
        endpoints = {**memory.endpoints, **{n.name: n.endpoint for n in spec.nodes}}
        if not self.fence(ns, name):
            return self._held(Held.NOT_LEADER, memory, ns, name, action)
        target = self._pending(action, memory, endpoints)
        intent: dict[str, Any] = {"phase": str(Phase.CONFIGURING)}
        if target is not None:
            intent = {"pending": target.to_status(), "phase": str(target.op.phase)}
        try:
            after = self.kube.patch_status(ns, name, intent, resource_version=resource_version)
        except errors.KubeConflict:
            return self._held(Held.CONFLICT, memory, ns, name, action)
        written = dict(after.get("status") or {})
        version = str((after.get("metadata") or {}).get("resourceVersion") or "") or None
        if target is not None:
            memory = replace(memory, pending=target)
        failpoints.hit("before-write")
        if not self.fence(ns, name):  # paused or cut off after the intent: the intent stays, nothing is sent
            held = self._held(Held.NOT_LEADER, memory, ns, name, action)
            return replace(held, written=written, resource_version=version, body=after)
        try:
            event = self._send(action, spec, endpoints, conn, key)
        except errors.ManagerError as e:
            # The request may have landed: the intent stays, the next observation settles it.
            reason = Reason.CONFIG_FAILED if target is None else target.op.failed
            failed = Event("Warning", str(reason), f"{action.describe()}: {e}")
            return Result(
                memory, sent=True, events=(failed,), written=written, resource_version=version, body=after, failed=True
            )
        failpoints.hit("after-write")
        if isinstance(action, Configure):
            memory = replace(memory, applied_config_hash=spec.config_hash)
        return Result(memory, sent=True, events=(event,), written=written, resource_version=version, body=after)

    def _pending(self, action: Write, memory: Memory, endpoints: dict[str, str]) -> Pending | None:
        now = self.clock()
        if isinstance(action, Configure):
            return None  # a PATCH of settings is idempotent: resending it is harmless
        if isinstance(action, Remove):
            return Pending(Op.REMOVE, action.name, endpoint=endpoints.get(action.name, ""), since=now)
        prior = memory.pending
        attempts = prior.attempts + 1 if prior is not None and prior.node == action.node.name else 1
        op = Op.BOOTSTRAP if isinstance(action, Bootstrap) else Op.JOIN
        return Pending(op, action.node.name, action.node.host_ip, action.node.endpoint, now, attempts)

    def _send(self, action: Write, spec: ClusterSpec, endpoints: dict[str, str], conn: Connection, key: str) -> Event:
        if isinstance(action, Configure):
            self.client(endpoints[action.master], conn).configure(spec.config)
            return Event(
                "Normal", str(Reason.CONFIG_APPLIED), f"Applied config {spec.config_hash} on master {action.master}"
            )
        if isinstance(action, Bootstrap):
            self.client(action.node.endpoint, conn).start(action.node.host_ip, action.node.name, key)
            return Event("Normal", str(Reason.BOOTSTRAPPING), f"Started a new cluster on {action.node.name}")
        if isinstance(action, Join):
            self.client(action.node.endpoint, conn).join(action.node.host_ip, action.node.name, key, action.join_addrs)
            return Event(
                "Normal", str(Reason.JOINING), f"Asked {action.node.name} to join via {', '.join(action.join_addrs)}"
            )
        with contextlib.suppress(errors.NotFound):  # already gone: the next observation settles it
            self.client(endpoints[action.master], conn).remove(action.name)
        return Event("Normal", str(Reason.REMOVING), f"Removed {action.name} from the cluster through {action.master}")

    def _held(self, why: Held, memory: Memory, ns: str, name: str, action: Write) -> Result:
        self.counts[why.value] = self.counts.get(why.value, 0) + 1
        log.info("Held back write namespace=%s name=%s reason=%s action=%r", ns, name, why.value, action.describe())
        return Result(memory, held=why)
