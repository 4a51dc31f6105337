"""Frozen values: the parsed spec, what a pass observed, what it remembers, what it plans.

Nothing here does I/O. `ClusterSpec.parse` is the operator's own check of a resource; the
CRD's schema and CEL rules catch the same mistakes earlier, at `kubectl apply` time.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidSpec

GROUP = "cloudify.co"
VERSION = "v1alpha1"
PLURAL = "managerclusters"
KIND = "ManagerCluster"
PAUSE_ANNOTATION = "cloudify.co/paused"
MAX_NODES = 32
#: spec.managementPolicies: what the operator may do (observing is always on), after Crossplane's.
POLICIES = ("Bootstrap", "Join", "Configure", "Remove")
NODE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


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
    policies: frozenset[str] = frozenset(POLICIES)  # the writes managementPolicies allow

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n.name for n in self.nodes)

    def node(self, name: str) -> NodeSpec | None:
        return next((n for n in self.nodes if n.name == name), None)

    @property
    def config(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.config_json)
        return value

    @property
    def config_hash(self) -> str:
        return config_hash(self.config_json)

    @staticmethod
    def parse(body: Mapping[str, Any]) -> ClusterSpec:
        """Checks and freezes a ManagerCluster's spec; raises InvalidSpec with a clear reason."""
        spec = body.get("spec") or {}
        meta = body.get("metadata") or {}
        nodes = tuple(_parse_node(i, raw) for i, raw in enumerate(_list(spec.get("nodes"), "spec.nodes")))
        if not nodes:
            raise InvalidSpec("InvalidSpec", "spec.nodes must name at least one manager")
        if len(nodes) > MAX_NODES:
            raise InvalidSpec("InvalidSpec", f"spec.nodes holds {len(nodes)} nodes; at most {MAX_NODES}")
        for attr, label in (("name", "name"), ("host_ip", "hostIP"), ("endpoint", "endpoint")):
            seen: set[str] = set()
            for n in nodes:
                value = getattr(n, attr)
                if attr == "endpoint":
                    value = value.rstrip("/")
                if value in seen:
                    raise InvalidSpec("InvalidSpec", f"spec.nodes: {label} {value!r} appears twice")
                seen.add(value)
        key_raw = spec.get("encryptionKeySecretRef")
        if not isinstance(key_raw, Mapping) or not _str(key_raw.get("name")):
            raise InvalidSpec("InvalidSpec", "spec.encryptionKeySecretRef.name is required")
        key_ref = SecretKeyRef(str(key_raw["name"]), _str(key_raw.get("key")) or "encryptionKey")
        cred_raw = spec.get("credentialsSecretRef")
        if not isinstance(cred_raw, Mapping) or not _str(cred_raw.get("name")):
            raise InvalidSpec("InvalidSpec", "spec.credentialsSecretRef.name is required")
        config = spec.get("config") or {}
        if not isinstance(config, Mapping):
            raise InvalidSpec("InvalidSpec", "spec.config must be an object of settings")
        if "master" in config:
            raise InvalidSpec(
                "InvalidSpec", "spec.config.master is not a setting: the cluster elects its active manager"
            )
        policy = spec.get("deletionPolicy") or "Orphan"
        if policy not in ("Orphan", "RemoveNodes"):
            raise InvalidSpec("InvalidSpec", "spec.deletionPolicy must be Orphan or RemoveNodes")
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


def _parse_policies(raw: Any) -> frozenset[str]:
    """["*"] (the default) allows every write; otherwise exactly the listed ones ("Observe" is implied)."""
    if raw is None:
        return frozenset(POLICIES)
    values = _list(raw, "spec.managementPolicies")
    unknown = [v for v in values if v not in (*POLICIES, "Observe", "*")]
    if unknown:
        raise InvalidSpec(
            "InvalidSpec",
            f"spec.managementPolicies: unknown policy {unknown[0]!r} (allowed: *, Observe, {', '.join(POLICIES)})",
        )
    if "*" in values:
        if len(values) > 1:
            raise InvalidSpec("InvalidSpec", "spec.managementPolicies: '*' stands alone")
        return frozenset(POLICIES)
    return frozenset(v for v in values if v in POLICIES)


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
        raise InvalidSpec("InvalidSpec", f"{where} must be a list")
    return value


def _parse_node(index: int, raw: Any) -> NodeSpec:
    where = f"spec.nodes[{index}]"
    if not isinstance(raw, Mapping):
        raise InvalidSpec("InvalidSpec", f"{where} must be an object with name, hostIP and endpoint")
    name, host_ip, endpoint = _str(raw.get("name")), _str(raw.get("hostIP")), _str(raw.get("endpoint"))
    if not NODE_NAME.match(name):
        raise InvalidSpec("InvalidSpec", f"{where}.name {name!r} is not a valid node name")
    try:
        ipaddress.ip_address(host_ip)
    except ValueError:
        raise InvalidSpec("InvalidSpec", f"{where}.hostIP {host_ip!r} is not an IP address") from None
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InvalidSpec("InvalidSpec", f"{where}.endpoint must be an http(s) URL")
    if url.username or url.password or "@" in url.netloc:
        raise InvalidSpec("InvalidSpec", f"{where}.endpoint must not carry credentials")
    if url.query or url.fragment or endpoint.endswith("?") or "#" in endpoint:
        raise InvalidSpec("InvalidSpec", f"{where}.endpoint must not carry a query or fragment")
    return NodeSpec(name=name, host_ip=host_ip, endpoint=endpoint.rstrip("/"))


def _parse_tls(raw: Any) -> TlsSpec:
    if raw is None:
        return TlsSpec()
    if not isinstance(raw, Mapping):
        raise InvalidSpec("InvalidSpec", "spec.tls must be an object")

    def ref(field_name: str) -> SecretKeyRef | None:
        value = raw.get(field_name)
        if value is None:
            return None
        if not isinstance(value, Mapping) or not _str(value.get("name")):
            raise InvalidSpec("InvalidSpec", f"spec.tls.{field_name}.name is required")
        return SecretKeyRef(str(value["name"]), _str(value.get("key")) or "ca.crt")

    secret, config_map = ref("caSecretRef"), ref("caConfigMapRef")
    if secret and config_map:
        raise InvalidSpec("InvalidSpec", "spec.tls: set caSecretRef or caConfigMapRef, not both")
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

    op: str  # "bootstrap" | "join" | "remove"
    node: str
    host_ip: str = ""
    endpoint: str = ""
    since: float = 0.0  # wall clock seconds when recorded
    attempts: int = 1

    def to_status(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "node": self.node,
            "hostIP": self.host_ip,
            "endpoint": self.endpoint,
            "since": round(self.since, 3),
            "sinceTime": rfc3339(self.since),
            "attempts": self.attempts,
        }

    @staticmethod
    def from_status(raw: Any) -> Pending | None:
        if not isinstance(raw, Mapping) or raw.get("op") not in ("bootstrap", "join", "remove"):
            return None
        return Pending(
            op=str(raw["op"]),
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


# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    node: NodeSpec
    retry: bool = False

    def describe(self) -> str:
        return f"bootstrap the cluster on {self.node.name}"


@dataclass(frozen=True)
class Join:
    node: NodeSpec
    join_addrs: tuple[str, ...]
    retry: bool = False

    def describe(self) -> str:
        return f"join {self.node.name} via {','.join(self.join_addrs)}"


@dataclass(frozen=True)
class Remove:
    name: str
    master: str

    def describe(self) -> str:
        return f"remove {self.name} through {self.master}"


@dataclass(frozen=True)
class Configure:
    config_json: str
    master: str

    def describe(self) -> str:
        return f"apply config {config_hash(self.config_json)} on {self.master}"


@dataclass(frozen=True)
class Wait:
    """Nothing to send now; look again soon (a start, join or removal is in flight)."""

    reason: str
    message: str

    def describe(self) -> str:
        return f"wait: {self.message}"


@dataclass(frozen=True)
class Blocked:
    """Something only a person can fix, or a rule forbids; reported, never forced."""

    reason: str
    message: str
    node: str | None = None

    def describe(self) -> str:
        return f"blocked: {self.message}"


Write = Bootstrap | Join | Remove | Configure
#: the managementPolicies entry each write needs
POLICY_OF: dict[type, str] = {Bootstrap: "Bootstrap", Join: "Join", Configure: "Configure", Remove: "Remove"}
Action = Bootstrap | Join | Remove | Configure | Wait | Blocked
WRITES = (Bootstrap, Join, Remove, Configure)
