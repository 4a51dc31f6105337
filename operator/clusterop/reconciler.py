"""One reconcile pass: read Secrets -> observe the managers -> plan -> execute one write -> status.

kopf-free and synchronous (it runs in a worker thread). A pass never sleeps waiting for a
manager: it returns how soon it wants to look again. Before a start, join or removal leaves,
its intent is written to status, so a crash between the request and the next status write can
never lead to a second bootstrap: the next pass (of this process or another) finds the intent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from . import errors, pacing, planner, status
from .client import Connection, Credentials, ManagerClient, Observer, Session
from .errors import InvalidSpec
from .executor import Executor
from .kube import Kube, NotFoundError
from .model import (
    EMPTY_CONFIG_HASH,
    WRITES,
    Action,
    ClusterSpec,
    Configure,
    Event,
    LogLine,
    Member,
    Memory,
    NodeKind,
    NodeSeen,
    Observed,
    Wait,
    Write,
)
from .pacing import Pacing, PacingSettings

__all__ = ["Event", "ObjectState", "Outcome", "Reconciler", "Settings"]

log = logging.getLogger("clusterop.reconciler")


@dataclass
class Outcome:
    status_patch: dict[str, Any]
    events: list[Event]
    requeue_after: float
    ready: bool = False
    members_online: int = 0
    base_status: dict[str, Any] | None = None  # status as a write inside the pass left it
    #: the object's resourceVersion the status patch is based on (its compare-and-swap)
    resource_version: str | None = None
    #: deletion (RemoveNodes): why nothing is left to do, None while something is
    finished: str | None = None


@dataclass
class ObjectState:
    """Per-object memory of the running process (not crash-safe: pacing and skipping work only)."""

    pacing: Pacing = field(default_factory=Pacing)  # how soon to look again
    last_status: dict[str, Any] | None = None  # status at `resource_version`, as last read or written
    resource_version: str | None = None
    last_problems: frozenset[str] = frozenset()  # problems whose Events were posted
    problems_seen: frozenset[str] | None = None  # the last pass's, until its write lands
    #: what the last steady pass saw, and the resourceVersion at which status was right; the same
    #: again needs no status work (any edit of status, by anyone, changes the resourceVersion)
    steady_key: Any = None

    def forget(self) -> None:
        """Read the object again before the next pass (a write conflicted, or leadership changed)."""
        self.last_status, self.resource_version, self.steady_key, self.problems_seen = None, None, None, None


@dataclass(frozen=True)
class Settings:
    request_timeout: tuple[float, float] = (2.0, 5.0)
    pacing: PacingSettings = field(default_factory=PacingSettings)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        session: Session,
        pool: ThreadPoolExecutor,
        settings: Settings,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        steady_session: Session | None = None,
        fence: Callable[[], bool] = lambda: True,
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
        self.executor = Executor(kube, self._client, fence=fence, clock=clock)

    # -- the pass -------------------------------------------------------------------------

    def run(self, body: Mapping[str, Any], state: ObjectState, *, deleting: bool = False) -> Outcome:
        """One pass. `deleting`: the object is being deleted with deletionPolicy RemoveNodes."""
        meta = body.get("metadata") or {}
        ns, name = str(meta.get("namespace")), str(meta.get("name"))
        body = self._live(ns, name, body, state)
        previous = state.last_status or {}
        version = state.resource_version
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        try:
            spec = ClusterSpec.parse(body)
            conn, key = self._secrets(ns, name, spec)
        except InvalidSpec as e:
            outcome = self._stopped_early(previous, generation, e, state)
            if deleting:
                outcome.finished = f"nothing removed: {e.message}"
            return outcome
        if deleting and "Remove" not in spec.policies:
            return Outcome({}, [], 1.0, finished="nothing removed: managementPolicies do not allow Remove")
        memory = status.memory_of(previous)
        seen = self._observe(spec, replace(memory, leader=None) if deleting else memory, conn)
        if any(n.kind is NodeKind.UNAUTHORIZED for n in seen.nodes.values()):
            self.kube.forget_secret(ns, spec.credentials_secret)  # a fixed Secret is read next pass
        steady_key = (seen.members, spec.generation, spec.paused, spec.config_hash, version) if seen.fast else None
        if steady_key is not None and state.steady_key == steady_key and not deleting:
            # The leader's list is what it was on the last pass, which wrote nothing, and nobody
            # has touched the object since (same resourceVersion): so would this pass.
            state.pacing.streak = 0
            return Outcome(
                {}, [], pacing.resync(self.settings.pacing), ready=True, members_online=len(seen.members or ())
            )
        memory = replace(memory, pending=planner.settle(memory.pending, seen))
        now = self.clock()
        actions = (planner.plan_deletion if deleting else planner.plan)(spec, seen, memory, now)
        events: list[Event] = []
        executed: Write | None = None
        first = actions[0] if actions else None
        written: dict[str, Any] | None = None
        if isinstance(first, WRITES) and not spec.paused:
            result = self.executor.execute(ns, name, version, spec, memory, conn, key, first)
            if result.held is not None and result.written is None:
                # Someone else moved, or this process is not the leader: observe again, write nothing.
                state.forget()
                return Outcome({}, [], self.settings.pacing.fast_first, resource_version=version)
            memory, written, version = result.memory, result.written, result.resource_version
            events.extend(result.events)
            executed = first if result.sent else None
        desired = status.build(
            previous=previous, spec=spec, seen=seen, memory=memory, actions=actions, executed=executed, now=_now_iso()
        )
        events.extend(self._problem_events(state, desired, spec))
        if desired["phase"] == "Ready" and previous.get("phase") != "Ready":
            events.append(Event("Normal", "Ready", f"All {len(spec.nodes)} nodes are members and online"))
        requeue = self._pace(state, desired, executed, actions)
        patch = status.merge_patch(previous, desired)
        if written is not None and isinstance(executed or first, Configure):
            # A config PATCH's outcome is known at once: write it on top of the intent.
            patch = status.merge_patch(written, desired)
            written = None if patch else written
        elif written is not None:
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
            resource_version=version,
            finished=planner.deletion_finished(seen, memory.pending) if deleting else None,
        )

    def _live(self, ns: str, name: str, body: Mapping[str, Any], state: ObjectState) -> Mapping[str, Any]:
        """The body to plan from, with `state` holding its status and resourceVersion.

        The watch's copy is used when it is at the version this loop last read or wrote; else
        (our own write not yet seen by the watch, or someone else changed the object) the
        object is read from the apiserver. Planning from the live status, not from what this
        loop last wrote, is what makes an edited or cleared status heal."""
        seen_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        if state.resource_version is not None and seen_version == state.resource_version:
            state.last_status = dict(body.get("status") or {})
            return body
        fresh = self.kube.cluster(ns, name)
        state.last_status = dict(fresh.get("status") or {})
        state.resource_version = str(fresh["metadata"].get("resourceVersion") or "") or None
        return fresh

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
        return Outcome(status.merge_patch(previous, desired), events, pacing.after_refusal(state.pacing))

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
        nodes = {m.name: NodeSeen(m.name, NodeKind.MASTER if m.master else NodeKind.REPLICA) for m in members}
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

    # -- pacing and events --------------------------------------------------------------------

    def _pace(
        self, state: ObjectState, desired: Mapping[str, Any], executed: Write | None, actions: tuple[Action, ...]
    ) -> float:
        in_flight = desired.get("pending") is not None or any(
            isinstance(a, Wait) and a.reason in status.PROGRESS_WAITS for a in actions
        )
        return pacing.next_look(
            state.pacing,
            self.settings.pacing,
            wrote=executed is not None,
            in_flight=in_flight,
            settled=desired["phase"] in ("Ready", "Paused"),
        )

    @staticmethod
    def _problem_events(state: ObjectState, desired: Mapping[str, Any], spec: ClusterSpec) -> list[Event]:
        degraded = next((c for c in desired["conditions"] if c["type"] == "Degraded"), None)
        messages = frozenset((desired.get("error") or "").split("; ")) - {""}
        new = messages - state.last_problems
        state.problems_seen = messages  # committed once this pass's status write landed
        if not new or degraded is None:
            return []
        kind = "Normal" if spec.paused else "Warning"
        return [Event(kind, str(degraded["reason"]), "; ".join(sorted(new)))]
