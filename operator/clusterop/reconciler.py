"""One reconcile pass: read Secrets -> observe the managers -> plan -> execute one write -> status.

kopf-free and synchronous (it runs in a worker thread). A pass never sleeps waiting for a
manager: it returns how soon it wants to look again. Before a start, join or removal leaves,
its intent is written to status, so a crash between the request and the next status write can
never lead to a second bootstrap: the next pass (of this process or another) finds the intent.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import requests

from . import errors, failpoints, planner, status
from .client import Connection, Credentials, ManagerClient, Observer
from .errors import InvalidSpec
from .kube import Kube, NotFoundError
from .model import (
    EMPTY_CONFIG_HASH,
    Action,
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
    Pending,
    Remove,
    Wait,
    Write,
)

log = logging.getLogger("clusterop.reconciler")


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    status_patch: dict[str, Any]
    events: list[Event]
    requeue_after: float
    ready: bool = False
    members_online: int = 0
    base_status: dict[str, Any] | None = None  # status as a write inside the pass left it


@dataclass
class ObjectState:
    """Per-object memory of the running process (not crash-safe: pacing and skipping work only)."""

    streak: int = 0  # consecutive passes waiting on something
    last_status: dict[str, Any] | None = None
    last_problems: frozenset[str] = frozenset()
    steady_key: Any = None  # what the last steady pass saw; the same again needs no status work


@dataclass(frozen=True)
class Settings:
    resync_seconds: float = 30.0
    request_timeout: tuple[float, float] = (2.0, 5.0)
    fast_first: float = 0.1  # first re-look while something is in flight
    fast_max: float = 2.0
    error_max: float = 60.0


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        session: requests.Session,
        pool: ThreadPoolExecutor,
        settings: Settings,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        steady_session: requests.Session | None = None,
    ) -> None:
        self.kube = kube
        self.session = session
        #: for the steady pass's one request (the leader's node list); default: `session`
        self.steady_session = steady_session or session
        self.pool = pool  # fan-out of manager requests within a pass
        self.settings = settings
        self.observer = observer
        self.clock = clock
        self._ca_dir = tempfile.mkdtemp(prefix="clusterop-ca-")

    # -- the pass -------------------------------------------------------------------------

    def run(self, body: Mapping[str, Any], state: ObjectState) -> Outcome:
        meta = body.get("metadata") or {}
        ns, name = str(meta.get("namespace")), str(meta.get("name"))
        previous = state.last_status if state.last_status is not None else dict(body.get("status") or {})
        generation = int(meta.get("generation") or 0)
        try:
            spec = ClusterSpec.parse(body)
            conn, key = self._secrets(ns, name, spec)
        except InvalidSpec as e:
            return self._stopped_early(previous, generation, e, state)
        memory = status.memory_of(previous)
        seen = self._observe(spec, memory, conn)
        if any(n.kind is NodeKind.UNAUTHORIZED for n in seen.nodes.values()):
            self.kube.forget_secret(ns, spec.credentials_secret)  # a fixed Secret is read next pass
        steady_key = (seen.members, spec.generation, spec.paused, spec.config_hash) if seen.fast else None
        if steady_key is not None and state.steady_key == steady_key:
            # The leader's list is what it was on the last pass, which wrote nothing: so would this one.
            state.streak = 0
            return Outcome({}, [], self._resync(), ready=True, members_online=len(seen.members or ()))
        memory = replace(memory, pending=planner.settle(memory.pending, seen))
        actions = planner.plan(spec, seen, memory, self.clock())
        events: list[Event] = []
        executed: Write | None = None
        first = actions[0] if actions else None
        written: dict[str, Any] | None = None
        if isinstance(first, Bootstrap | Join | Remove | Configure) and not spec.paused:
            memory, events, executed, written = self._execute(ns, name, spec, memory, conn, key, first)
        desired = status.build(
            previous=previous, spec=spec, seen=seen, memory=memory, actions=actions, executed=executed, now=_now_iso()
        )
        events.extend(self._problem_events(state, desired, spec))
        if desired["phase"] == "Ready" and previous.get("phase") != "Ready":
            events.append(Event("Normal", "Ready", f"All {len(spec.nodes)} nodes are members and online"))
        requeue = self._pace(state, desired, executed, actions)
        patch = status.merge_patch(previous, desired)
        if written is not None:
            # The intent written before the request is this pass's status write; the next pass, a
            # moment later, observes the outcome and writes the rest.
            patch = {}
        state.steady_key = steady_key if not patch and not events and desired["phase"] == "Ready" else None
        return Outcome(
            status_patch=patch,
            events=events,
            requeue_after=requeue,
            ready=desired["phase"] == "Ready",
            members_online=sum(1 for n in desired["nodes"] if n["online"]),
            base_status=written,
        )

    def _stopped_early(
        self, previous: Mapping[str, Any], generation: int, e: InvalidSpec, state: ObjectState
    ) -> Outcome:
        phase = "Pending" if e.reason in ("SecretMissing", "SecretKeyMissing") else "Invalid"
        desired = status.blocked_before_managers(
            previous=previous, generation=generation, phase=phase, reason=e.reason, message=e.message, now=_now_iso()
        )
        events = []
        if previous.get("error") != e.message:
            events.append(Event("Warning", e.reason, e.message))
        state.streak += 1
        delay = min(30.0, 1.0 * 2 ** min(state.streak - 1, 5))
        return Outcome(status.merge_patch(previous, desired), events, delay)

    # -- secrets --------------------------------------------------------------------------

    def _secrets(self, ns: str, name: str, spec: ClusterSpec) -> tuple[Connection, str]:
        """Credentials, TLS and the key, each checked before any manager is called."""
        creds_data = self._secret(ns, spec.credentials_secret, "credentialsSecretRef")
        username, password = creds_data.get("username", ""), creds_data.get("password", "")
        if not username or not password:
            raise InvalidSpec(
                "CredentialsInvalid",
                f"Secret {spec.credentials_secret} must hold non-empty keys username and password",
            )
        try:
            key_data = self._secret(ns, spec.key_ref.name, "encryptionKeySecretRef")
        except InvalidSpec:
            if not spec.generate_key:
                raise
            self.kube.create_key_secret(ns, spec.key_ref.name, spec.key_ref.key, owner=name)
            key_data = self._secret(ns, spec.key_ref.name, "encryptionKeySecretRef")
        key = key_data.get(spec.key_ref.key)
        if key is None:
            raise InvalidSpec(
                "SecretKeyMissing",
                f"Secret {spec.key_ref.name} has no key {spec.key_ref.key!r} (encryptionKeySecretRef)",
            )
        key = key.strip()
        try:
            valid = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise InvalidSpec(
                "EncryptionKeyInvalid",
                f"Secret {spec.key_ref.name} key {spec.key_ref.key!r} must be base64 of exactly 16 bytes",
            )
        conn = Connection(
            credentials=Credentials(username, password),
            tenant=spec.tenant,
            verify=self._verify(ns, spec),
            timeout=self.settings.request_timeout,
        )
        return conn, key

    def _secret(self, ns: str, secret: str, field_name: str) -> Mapping[str, str]:
        try:
            return self.kube.secret(ns, secret).data
        except NotFoundError:
            raise InvalidSpec("SecretMissing", f"Secret {ns}/{secret} ({field_name}) does not exist yet") from None

    def _verify(self, ns: str, spec: ClusterSpec) -> bool | str:
        tls = spec.tls
        if tls.insecure_skip_verify:
            return False
        pem: str | None = None
        if tls.ca_secret is not None:
            pem = self._secret(ns, tls.ca_secret.name, "tls.caSecretRef").get(tls.ca_secret.key)
            where = f"Secret {tls.ca_secret.name} key {tls.ca_secret.key!r}"
        elif tls.ca_config_map is not None:
            try:
                pem = self.kube.config_map(ns, tls.ca_config_map.name).get(tls.ca_config_map.key)
            except NotFoundError:
                raise InvalidSpec(
                    "SecretMissing", f"ConfigMap {ns}/{tls.ca_config_map.name} (tls.caConfigMapRef) does not exist yet"
                ) from None
            where = f"ConfigMap {tls.ca_config_map.name} key {tls.ca_config_map.key!r}"
        else:
            return True
        if not pem or "-----BEGIN CERTIFICATE-----" not in pem:
            raise InvalidSpec("TLSInvalid", f"{where} must hold a PEM CA certificate")
        path = os.path.join(self._ca_dir, hashlib.sha256(pem.encode()).hexdigest()[:16] + ".pem")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(pem)
        return path

    # -- observe ----------------------------------------------------------------------------

    def _client(self, endpoint: str, conn: Connection, *, steady: bool = False) -> ManagerClient:
        return ManagerClient(endpoint, conn, self.steady_session if steady else self.session, self.observer)

    def _observe(self, spec: ClusterSpec, memory: Memory, conn: Connection) -> Observed:
        fast = self._observe_fast(spec, memory, conn)
        if fast is not None:
            return fast
        endpoints = {**memory.endpoints, **{n.name: n.endpoint for n in spec.nodes}}
        if memory.pending is not None and memory.pending.endpoint:
            endpoints.setdefault(memory.pending.node, memory.pending.endpoint)
        names = list(endpoints)
        seen_list = list(
            self.pool.map(lambda n: self._classify(n, self._client(endpoints[n], conn), memory.cursors.get(n)), names)
        )
        seen = {s.name: s for s in seen_list}
        masters = [s.name for s in seen_list if s.kind is NodeKind.MASTER]
        members: tuple[Member, ...] | None = None
        if len(masters) == 1:
            try:
                members = tuple(Member.of(i) for i in self._client(endpoints[masters[0]], conn).nodes())
            except errors.ManagerError as e:
                log.info("Listing nodes failed master=%s error=%s", masters[0], e)
        return Observed(nodes=seen, members=members, master=masters[0] if len(masters) == 1 else None)

    def _observe_fast(self, spec: ClusterSpec, memory: Memory, conn: Connection) -> Observed | None:
        """One request in the steady state: the leader's node list, if it shows exactly the spec."""
        leader = spec.node(memory.leader) if memory.leader else None
        if leader is None or memory.pending is not None:
            return None
        if spec.config_hash != (memory.applied_config_hash or EMPTY_CONFIG_HASH):
            return None
        try:
            members = tuple(Member.of(i) for i in self._client(leader.endpoint, conn, steady=True).nodes())
        except errors.ManagerError:
            return None
        want = {(n.name, n.host_ip) for n in spec.nodes}
        got = {(m.name, m.host_ip) for m in members}
        masters = [m.name for m in members if m.master]
        if got != want or masters != [leader.name] or not all(m.online and m.initialized for m in members):
            return None
        nodes = {
            m.name: NodeSeen(m.name, NodeKind.MASTER if m.master else NodeKind.REPLICA) for m in members
        }
        return Observed(nodes=nodes, members=members, master=leader.name, fast=True)

    @staticmethod
    def _classify(name: str, client: ManagerClient, cursor: str | None) -> NodeSeen:
        try:
            state = client.state(since=cursor)
        except errors.NotMaster:
            return NodeSeen(name, NodeKind.REPLICA, cursor=cursor)
        except errors.RemovedNode:
            return NodeSeen(name, NodeKind.REMOVED, cursor=cursor)
        except errors.Unauthorized as e:
            return NodeSeen(name, NodeKind.UNAUTHORIZED, detail=f"HTTP {e.status}: {e.message}", cursor=cursor)
        except errors.ManagerError as e:
            return NodeSeen(name, NodeKind.UNREACHABLE, detail=str(e), cursor=cursor)
        entries = state.get("logs") or []
        logs = tuple(LogLine(name, int(e.get("timestamp", 0)), str(e.get("message", ""))) for e in entries)
        newest = str(entries[-1].get("cursor") or "") if entries else ""
        new_cursor = newest or cursor
        if state.get("initialized"):
            kind = NodeKind.MASTER
        elif state.get("error"):
            return NodeSeen(name, NodeKind.FAILED, detail=str(state["error"]), logs=logs, cursor=new_cursor)
        elif logs or cursor:
            kind = NodeKind.INITIALIZING
        else:
            kind = NodeKind.UNINITIALIZED
        return NodeSeen(name, kind, logs=logs, cursor=new_cursor)

    # -- execute ----------------------------------------------------------------------------

    def _execute(
        self, ns: str, name: str, spec: ClusterSpec, memory: Memory, conn: Connection, key: str, action: Write
    ) -> tuple[Memory, list[Event], Write | None, dict[str, Any] | None]:
        """Sends one write. Returns the new memory, events, the action if it was sent, and the
        status the intent write left (None for a config PATCH, which needs no intent)."""
        endpoints = {**memory.endpoints, **{n.name: n.endpoint for n in spec.nodes}}
        now = self.clock()
        if isinstance(action, Configure):
            try:
                self._client(endpoints[action.master], conn).configure(spec.config)
            except errors.ManagerError as e:
                failed = Event("Warning", "ConfigFailed", f"Applying config on {action.master} failed: {e}")
                return memory, [failed], None, None
            applied = spec.config_hash
            event = Event("Normal", "ConfigApplied", f"Applied config {applied} on master {action.master}")
            return replace(memory, applied_config_hash=applied), [event], action, None
        if isinstance(action, Remove):
            target = Pending("remove", action.name, endpoint=endpoints.get(action.name, ""), since=now)
        else:
            prior = memory.pending
            attempts = prior.attempts + 1 if prior is not None and prior.node == action.node.name else 1
            op = "bootstrap" if isinstance(action, Bootstrap) else "join"
            target = Pending(op, action.node.name, action.node.host_ip, action.node.endpoint, now, attempts)
        # The intent is durable before the request leaves: a crash after this line is recoverable.
        intent = {"pending": target.to_status(), "phase": status.PHASE_BY_OP[target.op]}
        written = dict(self.kube.patch_status(ns, name, intent).get("status") or {})
        failpoints.hit("before-write")
        memory = replace(memory, pending=target)
        try:
            if isinstance(action, Bootstrap):
                self._client(action.node.endpoint, conn).start(action.node.host_ip, action.node.name, key)
                event = Event("Normal", "Bootstrapping", f"Started a new cluster on {action.node.name}")
            elif isinstance(action, Join):
                self._client(action.node.endpoint, conn).join(
                    action.node.host_ip, action.node.name, key, action.join_addrs
                )
                event = Event(
                    "Normal", "Joining", f"Asked {action.node.name} to join via {', '.join(action.join_addrs)}"
                )
            else:
                with contextlib.suppress(errors.NotFound):  # already gone: the next observation settles it
                    self._client(endpoints[action.master], conn).remove(action.name)
                event = Event("Normal", "Removing", f"Removed {action.name} from the cluster through {action.master}")
        except errors.ManagerError as e:
            # The request may have landed: keep the intent, the next observation settles it.
            failed = Event("Warning", f"{target.op.capitalize()}Failed", f"{action.describe()}: {e}")
            return memory, [failed], action, written
        failpoints.hit("after-write")
        return memory, [event], action, written

    # -- pacing and events --------------------------------------------------------------------

    def _pace(
        self, state: ObjectState, desired: Mapping[str, Any], executed: Write | None, actions: tuple[Action, ...]
    ) -> float:
        s = self.settings
        if executed is not None:
            state.streak = 0
            return s.fast_first
        in_flight = desired.get("pending") is not None or any(
            isinstance(a, Wait) and a.reason in status.PROGRESS_WAITS for a in actions
        )
        if in_flight:
            state.streak += 1
            return float(min(s.fast_max, s.fast_first * 1.6 ** (state.streak - 1)))
        if desired["phase"] in ("Ready", "Paused"):
            state.streak = 0
            return self._resync()
        state.streak += 1
        return float(min(s.error_max, s.resync_seconds, 1.0 * 2 ** min(state.streak - 1, 6)))

    def _resync(self) -> float:
        return self.settings.resync_seconds * random.uniform(0.9, 1.1)

    @staticmethod
    def _problem_events(state: ObjectState, desired: Mapping[str, Any], spec: ClusterSpec) -> list[Event]:
        degraded = next((c for c in desired["conditions"] if c["type"] == "Degraded"), None)
        messages = frozenset((desired.get("error") or "").split("; ")) - {""}
        new = messages - state.last_problems
        state.last_problems = messages
        if not new or degraded is None:
            return []
        kind = "Normal" if spec.paused else "Warning"
        return [Event(kind, str(degraded["reason"]), "; ".join(sorted(new)))]

    # -- deletion ---------------------------------------------------------------------------

    def dissolve(self, body: Mapping[str, Any]) -> tuple[bool, str]:
        """deletionPolicy RemoveNodes: remove one member (never the last) per call.

        Returns (done, message). The last member is never removed: the API cannot dissolve a
        cluster, so it stays a one-node cluster."""
        meta = body.get("metadata") or {}
        ns, name = str(meta.get("namespace")), str(meta.get("name"))
        try:
            spec = ClusterSpec.parse(body)
            conn, _ = self._secrets(ns, name, spec)
        except InvalidSpec as e:
            return True, f"nothing removed: {e.message}"
        memory = status.memory_of(body.get("status") or {})
        seen = self._observe(spec, replace(memory, leader=None), conn)
        if seen.master is None or seen.members is None:
            if not any(n.kind in (NodeKind.MASTER, NodeKind.REPLICA) for n in seen.nodes.values()):
                return True, "no cluster found on the managers; nothing to remove"
            return False, "no master answers; waiting to remove nodes"
        members = sorted(seen.members, key=lambda m: (m.master, m.name))
        if len(members) <= 1:
            return True, f"removed every node but the last ({seen.master}), which is never removed"
        offline = [m.name for m in members if not m.online]
        if offline:
            return False, f"not removing nodes while {', '.join(offline)} is offline"
        endpoints = {**memory.endpoints, **{n.name: n.endpoint for n in spec.nodes}}
        drop = members[0]
        try:
            with contextlib.suppress(errors.NotFound):
                self._client(endpoints[seen.master], conn).remove(drop.name)
        except errors.ManagerError as e:
            return False, f"removing {drop.name} failed: {e}"
        return False, f"removed {drop.name}; {len(members) - 1} nodes left"
