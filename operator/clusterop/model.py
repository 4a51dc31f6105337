"""Frozen values: the parsed spec, what a pass observed, what it remembers, what it plans.

Nothing here does I/O. `ClusterSpec.parse` is the operator's own check of a resource; the
CRD's schema and CEL rules catch the same mistakes earlier, at `kubectl apply` time.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import ipaddress
import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeGuard
from urllib.parse import urlsplit

from .errors import InvalidSpec, Refusal

GROUP = "cloudify.co"
VERSION = "v1alpha1"
PLURAL = "managerclusters"
KIND = "ManagerCluster"
PAUSE_ANNOTATION = "cloudify.co/paused"
MAX_NODES = 32
NODE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


# -- the words status, Events and the planner use --------------------------------------------


class Phase(enum.StrEnum):
    """status.phase: one word for people (the CRD's description lists the same words)."""

    PENDING = "Pending"
    INVALID = "Invalid"
    BOOTSTRAPPING = "Bootstrapping"
    JOINING = "Joining"
    REMOVING = "Removing"
    CONFIGURING = "Configuring"
    READY = "Ready"
    DEGRADED = "Degraded"
    WAITING = "Waiting"
    PAUSED = "Paused"


class Op(enum.StrEnum):
    """A membership write remembered in status.pending until its outcome is observed."""

    BOOTSTRAP = "bootstrap"
    JOIN = "join"
    REMOVE = "remove"

    @property
    def phase(self) -> Phase:
        return _PHASE_OF_OP[self]

    @property
    def failed(self) -> Reason:
        """The reason of a Wait (and an Event) when this write failed on the manager."""
        return _FAILED_OF_OP[self]


class Reason(enum.StrEnum):
    """Reasons of planned Waits and Blocks, of problems, of conditions and of Events."""

    # Waits that are normal progress: a write of the operator is in flight
    BOOTSTRAPPING = "Bootstrapping"
    JOINING = "Joining"
    REMOVING = "Removing"
    ELECTING = "Electing"
    # a Wait that is normal sequencing: a step queued behind another (not a problem, not in flight)
    WAITING_FOR_JOINS = "WaitingForJoins"
    # Waits that are problems: something outside the operator must change first
    MASTER_UNREACHABLE = "MasterUnreachable"
    NO_MASTER = "NoMaster"
    NODE_UNREACHABLE = "NodeUnreachable"
    NODE_BUSY = "NodeBusy"
    BOOTSTRAP_FAILED = "BootstrapFailed"
    JOIN_FAILED = "JoinFailed"
    REMOVE_FAILED = "RemoveFailed"
    # Blocks: only a person can fix it, or a rule forbids it
    HELD_BY_POLICY = "HeldByPolicy"
    CREDENTIALS_REJECTED = "CredentialsRejected"
    SPLIT_BRAIN = "SplitBrain"
    CANNOT_REJOIN = "CannotRejoin"
    NODE_FAILED = "NodeFailed"
    FOREIGN_CLUSTER = "ForeignCluster"
    LAST_NODE = "LastNode"
    MEMBER_OFFLINE = "MemberOffline"
    NO_SUCCESSOR = "NoSuccessor"
    # problems observed, not planned
    NODE_OFFLINE = "NodeOffline"
    # condition reasons
    CLUSTER_READY = "ClusterReady"
    RECONCILED = "Reconciled"
    PAUSED = "Paused"
    AS_EXPECTED = "AsExpected"
    # Events of writes and transitions
    READY = "Ready"
    CONFIG_APPLIED = "ConfigApplied"
    CONFIG_FAILED = "ConfigFailed"

    @property
    def in_flight(self) -> bool:
        """A Wait for a write the operator sent: look again soon, and it is not a problem."""
        return self in _IN_FLIGHT

    @property
    def is_problem(self) -> bool:
        """A Wait or Block with this reason is reported as Degraded (and as a Warning Event)."""
        return self not in _IN_FLIGHT and self is not Reason.WAITING_FOR_JOINS


_IN_FLIGHT = frozenset({Reason.BOOTSTRAPPING, Reason.JOINING, Reason.REMOVING, Reason.ELECTING})
_PHASE_OF_OP = {Op.BOOTSTRAP: Phase.BOOTSTRAPPING, Op.JOIN: Phase.JOINING, Op.REMOVE: Phase.REMOVING}
_FAILED_OF_OP = {Op.BOOTSTRAP: Reason.BOOTSTRAP_FAILED, Op.JOIN: Reason.JOIN_FAILED, Op.REMOVE: Reason.REMOVE_FAILED}


class Policy(enum.StrEnum):
    """spec.managementPolicies entries: the writes the operator may make (observing is always on)."""

    BOOTSTRAP = "Bootstrap"
    JOIN = "Join"
    CONFIGURE = "Configure"
    REMOVE = "Remove"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    host_ip: str
    endpoint: str


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class TlsSpec:
    ca_secret: SecretKeyRef | None = None
    ca_config_map: SecretKeyRef | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class ClusterSpec:
    nodes: tuple[NodeSpec, ...]
    key_ref: SecretKeyRef
    generate_key: bool
    credentials_secret: str
    tenant: str | None
    tls: TlsSpec
    config_json: str  # canonical JSON of spec.config ("{}" when absent)
    deletion_policy: str
    paused: bool
    generation: int
    policies: frozenset[Policy] = frozenset(Policy)  # the writes managementPolicies allow (after Crossplane's)

    def node(self, name: str) -> NodeSpec | None:
        return next((n for n in self.nodes if n.name == name), None)

    @property
    def config(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.config_json)
        return value

    @functools.cached_property
    def config_hash(self) -> str:
        return config_hash(self.config_json)

    @functools.cached_property
    def names(self) -> frozenset[str]:
        return frozenset(n.name for n in self.nodes)

    @staticmethod
    def parse(body: Mapping[str, Any]) -> ClusterSpec:
        """Checks and freezes a ManagerCluster's spec; raises InvalidSpec with a clear reason."""
        spec = body.get("spec") or {}
        meta = body.get("metadata") or {}
        nodes = tuple(_parse_node(i, raw) for i, raw in enumerate(_list(spec.get("nodes"), "spec.nodes")))
        if not nodes:
            raise InvalidSpec(Refusal.INVALID_SPEC, "spec.nodes must name at least one manager")
        if len(nodes) > MAX_NODES:
            raise InvalidSpec(Refusal.INVALID_SPEC, f"spec.nodes holds {len(nodes)} nodes; at most {MAX_NODES}")
        for attr, label in (("name", "name"), ("host_ip", "hostIP"), ("endpoint", "endpoint")):
            seen: set[str] = set()
            for n in nodes:
                value = getattr(n, attr)
                if attr == "endpoint":
                    value = value.rstrip("/")
                if value in seen:
                    raise InvalidSpec(Refusal.INVALID_SPEC, f"spec.nodes: {label} {value!r} appears twice")
                seen.add(value)
        key_raw = spec.get("encryptionKeySecretRef")
        if not isinstance(key_raw, Mapping) or not _str(key_raw.get("name")):
            raise InvalidSpec(Refusal.INVALID_SPEC, "spec.encryptionKeySecretRef.name is required")
        key_ref = SecretKeyRef(str(key_raw["name"]), _str(key_raw.get("key")) or "encryptionKey")
        cred_raw = spec.get("credentialsSecretRef")
        if not isinstance(cred_raw, Mapping) or not _str(cred_raw.get("name")):
            raise InvalidSpec(Refusal.INVALID_SPEC, "spec.credentialsSecretRef.name is required")
        config = spec.get("config") or {}
        if not isinstance(config, Mapping):
            raise InvalidSpec(Refusal.INVALID_SPEC, "spec.config must be an object of settings")
        if "master" in config:
            raise InvalidSpec(
                Refusal.INVALID_SPEC, "spec.config.master is not a setting: the cluster elects its active manager"
            )
        policy = spec.get("deletionPolicy") or "Orphan"
        if policy not in ("Orphan", "RemoveNodes"):
            raise InvalidSpec(Refusal.INVALID_SPEC, "spec.deletionPolicy must be Orphan or RemoveNodes")
        tenant = spec.get("tenant")
        annotations = meta.get("annotations") or {}
        return ClusterSpec(
            nodes=nodes,
            key_ref=key_ref,
            generate_key=bool(key_raw.get("generate", False)),
            credentials_secret=str(cred_raw["name"]),
            tenant=str(tenant) if tenant else None,
            tls=_parse_tls(spec.get("tls")),
            config_json=canonical_json(config),
            deletion_policy=str(policy),
            paused=str(annotations.get(PAUSE_ANNOTATION, "")).lower() == "true",
            generation=int(meta.get("generation") or 0),
            policies=_parse_policies(spec.get("managementPolicies")),
        )


def _parse_policies(raw: Any) -> frozenset[Policy]:
    """["*"] (the default) allows every write; otherwise exactly the listed ones ("Observe" is implied)."""
    if raw is None:
        return frozenset(Policy)
    values = _list(raw, "spec.managementPolicies")
    unknown = [v for v in values if v not in (*Policy, "Observe", "*")]
    if unknown:
        raise InvalidSpec(
            Refusal.INVALID_SPEC,
            f"spec.managementPolicies: unknown policy {unknown[0]!r} (allowed: *, Observe, {', '.join(Policy)})",
        )
    if "*" in values:
        if len(values) > 1:
            raise InvalidSpec(Refusal.INVALID_SPEC, "spec.managementPolicies: '*' stands alone")
        return frozenset(Policy)
    return frozenset(Policy(v) for v in values if v in tuple(Policy))


def rfc3339(epoch_seconds: float) -> str:
    """An epoch time as people and `kubectl describe` read it: 2026-12-01T10:00:01.123Z (UTC)."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_hash(config_json: str) -> str:
    return hashlib.sha256(config_json.encode()).hexdigest()[:16]


EMPTY_CONFIG_HASH = config_hash("{}")


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidSpec(Refusal.INVALID_SPEC, f"{where} must be a list")
    return value


def _parse_node(index: int, raw: Any) -> NodeSpec:
    where = f"spec.nodes[{index}]"
    if not isinstance(raw, Mapping):
        raise InvalidSpec(Refusal.INVALID_SPEC, f"{where} must be an object with name, hostIP and endpoint")
    name, host_ip, endpoint = _str(raw.get("name")), _str(raw.get("hostIP")), _str(raw.get("endpoint"))
    if not NODE_NAME.match(name):
        raise InvalidSpec(Refusal.INVALID_SPEC, f"{where}.name {name!r} is not a valid node name")
    try:
        ipaddress.ip_address(host_ip)
    except ValueError:
        raise InvalidSpec(Refusal.INVALID_SPEC, f"{where}.hostIP {host_ip!r} is not an IP address") from None
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InvalidSpec(Refusal.INVALID_SPEC, f"{where}.endpoint must be an http(s) URL")
    if url.username or url.password or "@" in url.netloc:
        raise InvalidSpec(Refusal.INVALID_SPEC, f"{where}.endpoint must not carry credentials")
    if url.query or url.fragment or endpoint.endswith("?") or "#" in endpoint:
        raise InvalidSpec(Refusal.INVALID_SPEC, f"{where}.endpoint must not carry a query or fragment")
    return NodeSpec(name=name, host_ip=host_ip, endpoint=endpoint.rstrip("/"))


def _parse_tls(raw: Any) -> TlsSpec:
    if raw is None:
        return TlsSpec()
    if not isinstance(raw, Mapping):
        raise InvalidSpec(Refusal.INVALID_SPEC, "spec.tls must be an object")

    def ref(field_name: str) -> SecretKeyRef | None:
        value = raw.get(field_name)
        if value is None:
            return None
        if not isinstance(value, Mapping) or not _str(value.get("name")):
            raise InvalidSpec(Refusal.INVALID_SPEC, f"spec.tls.{field_name}.name is required")
        return SecretKeyRef(str(value["name"]), _str(value.get("key")) or "ca.crt")

    secret, config_map = ref("caSecretRef"), ref("caConfigMapRef")
    if secret and config_map:
        raise InvalidSpec(Refusal.INVALID_SPEC, "spec.tls: set caSecretRef or caConfigMapRef, not both")
    return TlsSpec(secret, config_map, bool(raw.get("insecureSkipVerify", False)))


# -- what a pass observed -------------------------------------------------------------------


class NodeKind(enum.StrEnum):
    UNINITIALIZED = "Uninitialized"
    INITIALIZING = "Initializing"
    FAILED = "Failed"
    MASTER = "Master"
    REPLICA = "Replica"
    REMOVED = "Removed"
    UNREACHABLE = "Unreachable"
    UNAUTHORIZED = "Unauthorized"
    UNKNOWN = "Unknown"  # not asked this pass (the steady-state fast path)


@dataclass(frozen=True)
class LogLine:
    node: str
    timestamp: int
    message: str


@dataclass(frozen=True)
class NodeSeen:
    name: str
    kind: NodeKind
    detail: str = ""  # an error text for Failed / Unreachable / Unauthorized
    logs: tuple[LogLine, ...] = ()
    cursor: str | None = None  # the newest log cursor seen on this node


@dataclass(frozen=True)
class Member:
    """One item of the master's node list."""

    name: str
    host_ip: str
    online: bool
    master: bool
    initialized: bool

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> Member:
        """From an item of `GET /api/v3/cluster/nodes` (client.ClusterNode)."""
        return cls(item["name"], item["host_ip"], item["online"], item["master"], item["initialized"])


@dataclass(frozen=True)
class Observed:
    nodes: Mapping[str, NodeSeen]
    members: tuple[Member, ...] | None = None  # the master's list; None without a reachable master
    master: str | None = None
    fast: bool = False  # only the master's node list was asked

    @property
    def masters(self) -> tuple[str, ...]:
        return tuple(sorted(n.name for n in self.nodes.values() if n.kind is NodeKind.MASTER))

    def kind(self, name: str) -> NodeKind:
        seen = self.nodes.get(name)
        return seen.kind if seen else NodeKind.UNKNOWN

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members or () if m.name == name), None)


# -- what a pass remembers (kept in status, so it survives a crash) --------------------------


@dataclass(frozen=True)
class Pending:
    """A write that was sent (or is about to be): recorded before the request leaves."""

    op: Op
    node: str
    host_ip: str = ""
    endpoint: str = ""
    since: float = 0.0  # wall clock seconds when recorded
    attempts: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "op", Op(self.op))  # Pending("join", ...) reads as Op.JOIN

    def to_status(self) -> dict[str, Any]:
        return {
            "op": str(self.op),
            "node": self.node,
            "hostIP": self.host_ip,
            "endpoint": self.endpoint,
            "since": round(self.since, 3),
            "sinceTime": rfc3339(self.since),
            "attempts": self.attempts,
        }

    @staticmethod
    def from_status(raw: Any) -> Pending | None:
        if not isinstance(raw, Mapping) or raw.get("op") not in tuple(Op):
            return None
        return Pending(
            op=Op(raw["op"]),
            node=str(raw.get("node", "")),
            host_ip=str(raw.get("hostIP", "")),
            endpoint=str(raw.get("endpoint", "")),
            since=float(raw.get("since") or 0.0),
            attempts=int(raw.get("attempts") or 1),
        )


@dataclass(frozen=True)
class Memory:
    """What earlier passes left in status that the planner needs."""

    pending: Pending | None = None
    applied_config_hash: str | None = None
    leader: str | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)  # last known endpoint per member
    cursors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Problem:
    """Something wrong a pass saw or planned around: kept as values, joined only when rendered."""

    reason: Reason
    message: str


# -- actions --------------------------------------------------------------------------------
# A write names the phase it puts the cluster in and the managementPolicies entry it needs.


@dataclass(frozen=True)
class Bootstrap:
    node: NodeSpec
    retry: bool = False
    phase: ClassVar[Phase] = Phase.BOOTSTRAPPING
    policy: ClassVar[Policy] = Policy.BOOTSTRAP

    def describe(self) -> str:
        return f"bootstrap the cluster on {self.node.name}"


@dataclass(frozen=True)
class Join:
    node: NodeSpec
    join_addrs: tuple[str, ...]
    retry: bool = False
    phase: ClassVar[Phase] = Phase.JOINING
    policy: ClassVar[Policy] = Policy.JOIN

    def describe(self) -> str:
        return f"join {self.node.name} via {','.join(self.join_addrs)}"


@dataclass(frozen=True)
class Remove:
    name: str
    master: str
    phase: ClassVar[Phase] = Phase.REMOVING
    policy: ClassVar[Policy] = Policy.REMOVE

    def describe(self) -> str:
        return f"remove {self.name} through {self.master}"


@dataclass(frozen=True)
class Configure:
    config_json: str
    master: str
    phase: ClassVar[Phase] = Phase.CONFIGURING
    policy: ClassVar[Policy] = Policy.CONFIGURE

    def describe(self) -> str:
        return f"apply config {config_hash(self.config_json)} on {self.master}"


@dataclass(frozen=True)
class Wait:
    """Nothing to send now: a write is in flight, a step is queued, or something must change first
    (the reason says which: `Reason.in_flight`, `Reason.is_problem`)."""

    reason: Reason
    message: str

    def describe(self) -> str:
        return f"wait: {self.message}"


@dataclass(frozen=True)
class Blocked:
    """Something only a person can fix, or a rule forbids; reported, never forced."""

    reason: Reason
    message: str
    node: str | None = None

    def describe(self) -> str:
        return f"blocked: {self.message}"


#: The one definition of the writes; WRITES is the same set as a tuple for isinstance().
Write = Bootstrap | Join | Remove | Configure
WRITES: tuple[type[Write], ...] = typing.get_args(Write)
Action = Write | Wait | Blocked


def is_write(action: Action | None) -> TypeGuard[Write]:
    return isinstance(action, WRITES)
