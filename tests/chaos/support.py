"""What the chaos suite shares: the session's secrets and every form of them that must never
show, a scanner for logs, Events, status, annotations and metrics, and the simulator's own
view of a set of machines (the judge of every trial: never the operator's status).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from kubernetes import client
from kubernetes.client import ApiClient

from clusterop_dev.harness import GROUP, PLURAL, VERSION

# One password and one key per session, distinctive enough that any hit is a leak.
PASSWORD = "Chaos-" + secrets.token_urlsafe(12)
KEY = base64.b64encode(os.urandom(16)).decode()
USERS = f"admin:{PASSWORD}:admin"


def secret_forms(values: Iterable[str] = (PASSWORD, KEY), user: str = "admin") -> dict[str, str]:
    """Each secret as sent, base64 (both alphabets, unpadded too), hex, and inside a Basic header."""
    forms: dict[str, str] = {}
    for value in values:
        raw = value.encode()
        forms[f"{value[:3]}…"] = value
        forms[f"base64({value[:3]}…)"] = base64.b64encode(raw).decode().rstrip("=")
        forms[f"urlsafe-base64({value[:3]}…)"] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        forms[f"hex({value[:3]}…)"] = raw.hex()
        forms[f"HEX({value[:3]}…)"] = raw.hex().upper()
        try:
            decoded = base64.b64decode(value, validate=True)
        except ValueError:
            decoded = b""
        if len(decoded) >= 8:
            forms[f"hex(decoded {value[:3]}…)"] = decoded.hex()
        basic = base64.b64encode(f"{user}:{value}".encode()).decode().rstrip("=")
        forms[f"basic-auth({value[:3]}…)"] = basic
    return forms


def find_secrets(texts: Mapping[str, str], forms: Mapping[str, str] | None = None) -> list[str]:
    """'where: which form' for every secret form found in any of the named texts."""
    forms = forms if forms is not None else secret_forms()
    return [f"{where}: {label}" for where, text in texts.items() for label, form in forms.items() if form in text]


def kube_texts(api: ApiClient, namespace: str) -> dict[str, str]:
    """Events, ManagerCluster status and metadata (kopf's annotations included) of a namespace."""
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    texts: dict[str, str] = {}
    for e in core.list_namespaced_event(namespace).items:
        texts[f"event {e.metadata.name}"] = f"{e.reason} {e.message} {e.metadata.annotations}"
    for obj in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL).get("items", []):
        name = obj["metadata"]["name"]
        texts[f"status {name}"] = repr(obj.get("status"))
        texts[f"metadata {name}"] = repr(obj.get("metadata"))
    try:
        for p in custom.list_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings").get("items", []):
            texts[f"peering {p['metadata']['name']}"] = repr(p)
    except client.exceptions.ApiException:
        pass
    return texts


# -- the simulator's view ---------------------------------------------------------------------


class SimView:
    """Reads the simulator's control API with its own HTTP session (one per thread of use)."""

    def __init__(self, control: str) -> None:
        self.control = control
        self._local = threading.local()

    def _get(self, path: str) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        r = session.get(self.control + path, timeout=10)
        r.raise_for_status()
        return r.json()

    def clusters_of(self, ips: Iterable[str]) -> list[dict[str, Any]]:
        wanted = set(ips)
        return [c for c in self._get("/clusters")["clusters"] if wanted & {m["host_ip"] for m in c["members"]}]

    def machines_of(self, ips: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = set(ips)
        return {m["host_ip"]: m for m in self._get("/machines")["machines"] if m["host_ip"] in wanted}

    def writes_to(self, ips: Iterable[str]) -> int:
        wanted = set(ips)
        counts = self._get("/requests")["counts"]
        return sum(c["count"] for c in counts if c["host_ip"] in wanted and c["method"] in ("PUT", "PATCH", "DELETE"))

    def write_log(self, ips: Iterable[str]) -> list[dict[str, Any]]:
        """The writes to these machines in arrival order: time, host_ip, method, path, agent."""
        wanted = set(ips)
        return [w for w in self._get("/requests/writes")["writes"] if w["host_ip"] in wanted]

    def writes_by(self, ips: Iterable[str]) -> list[tuple[str, str, str, int]]:
        wanted = set(ips)
        counts = self._get("/requests")["counts"]
        return sorted(
            (c["host_ip"], c["method"], c["path"], c["count"])
            for c in counts
            if c["host_ip"] in wanted and c["method"] in ("PUT", "PATCH", "DELETE")
        )


@dataclass
class Judge:
    """Watches one cluster's machines from the simulator's side and records every broken rule.

    `spec_drops` holds, per node name, the monotonic time just before the spec change that
    dropped it was sent; a node is never re-added once dropped, so a removal seen before its
    drop was sent removed a node the spec still wanted."""

    view: SimView
    machines: Sequence[Mapping[str, Any]]
    names: Mapping[str, str]  # host_ip -> node name
    violations: list[str] = field(default_factory=list)
    spec_drops: dict[str, float] = field(default_factory=dict)
    removed_at: dict[str, float] = field(default_factory=dict)
    polls: int = 0

    @property
    def ips(self) -> list[str]:
        return [m["host_ip"] for m in self.machines]

    def _flag(self, text: str) -> None:
        if text not in self.violations:
            self.violations.append(text)

    def poll(self, now: float) -> list[dict[str, Any]]:
        found = self.view.clusters_of(self.ips)
        self.polls += 1
        if len(found) > 1:
            self._flag(f"{len(found)} clusters formed: {[c['id'] for c in found]}")
        for c in found:
            if c["bootstraps"] != 1:
                self._flag(f"cluster {c['id']} was bootstrapped {c['bootstraps']} times")
            live = [m for m in c["members"] if not m["removed"]]
            if not live:
                self._flag(f"cluster {c['id']}: the last node was removed")
            for m in c["members"]:
                if m["removed"] and m["name"] not in self.removed_at:
                    self.removed_at[m["name"]] = now
                    dropped = self.spec_drops.get(m["name"])
                    if dropped is None or dropped > now:
                        self._flag(f"{m['name']} was removed while the spec still wanted it")
        return found

    def converged(self, want: Sequence[str], config: Mapping[str, Any]) -> bool:
        """The simulator shows exactly the wanted members, all online, one master, the config."""
        found = self.view.clusters_of(self.ips)
        if len(found) != 1:
            return False
        (c,) = found
        live = {m["name"]: m for m in c["members"] if not m["removed"]}
        if set(live) != set(want) or not all(m["online"] and m["initialized"] for m in live.values()):
            return False
        if c["master"] not in live or dict(c["settings"]) != dict(config):
            return False
        return not self.stray(want)

    def stray(self, want: Sequence[str]) -> list[str]:
        """Machines joined to nothing, half-joined or failed (a node outside the spec must be
        untouched or removed; one inside it a master or replica)."""
        out = []
        for ip, m in self.view.machines_of(self.ips).items():
            name = self.names[ip]
            ok = ("master", "replica") if name in want else ("uninitialized", "removed")
            if m["state"] not in ok:
                out.append(f"{name} is {m['state']}")
            elif m["state"] in ("master", "replica") and not m["cluster"]:
                out.append(f"{name} is {m['state']} of no cluster")
        return out


# -- fencing, judged from the managers' write log -------------------------------------------------

AGENT = re.compile(
    r"cloudify-cluster-operator \((?P<identity>[^;)]+)(?:; term (?P<term>\d+))?(?:; (?P<shard>shard \d+ of \d+))?\)"
)


def fencing_violations(writes: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every write (in arrival order) must come from the leader of its time: it carries the
    sender's leader term (leaseTransitions at its acquisition, which grows with every new
    leader). A write without a term came from an instance that never led; a write of an older
    term after one of a newer term came from a deposed leader; one term has one holder. And no
    PUT (a start or a join) reaches the same machine twice."""
    found: list[str] = []
    newest = -1
    holders: dict[int, str] = {}
    puts: dict[tuple[str, str], int] = {}
    for w in writes:
        what = f"{w['method']} {w['path']} to {w['host_ip']}"
        m = AGENT.search(str(w.get("agent") or ""))
        if m is None or m.group("term") is None:
            found.append(f"{what} from a non-leader ({w.get('agent')!r})")
        else:
            term, identity = int(m.group("term")), m.group("identity")
            if term < newest:
                found.append(f"{what} from a deposed leader (term {term} after term {newest}, {identity})")
            if holders.setdefault(term, identity) != identity:
                found.append(f"term {term} had two holders: {holders[term]} and {identity}")
            newest = max(newest, term)
        if w["method"] == "PUT":
            key = (w["host_ip"], w["path"])
            puts[key] = puts.get(key, 0) + 1
            if puts[key] == 2:
                found.append(f"the same PUT twice: {what}")
    return found


def term_of(write: Mapping[str, Any]) -> int | None:
    m = AGENT.search(str(write.get("agent") or ""))
    return int(m.group("term")) if m and m.group("term") else None
