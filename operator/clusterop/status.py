"""Status from one pass, and the smallest merge patch that writes it. Pure: no I/O.

Only keys this module owns are written or removed; nothing that changes on every pass (no
timestamps of passes) is kept, so a steady cluster costs no status write at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .model import (
    EMPTY_CONFIG_HASH,
    WRITES,
    Action,
    Blocked,
    ClusterSpec,
    Memory,
    NodeKind,
    Observed,
    Pending,
    Wait,
    rfc3339,
)

MAX_LOGS = 20
MAX_PLANNED = 10
OWNED = (
    "observedGeneration",
    "phase",
    "conditions",
    "initialized",
    "leader",
    "nodes",
    "nodeSummary",
    "error",
    "logs",
    "logCursors",
    "appliedConfigHash",
    "plannedActions",
    "pending",
)
#: Waits that are normal progress, not a problem to report as Degraded.
PROGRESS_WAITS = frozenset({"Bootstrapping", "Joining", "Removing", "Electing"})
PHASE_BY_OP = {"bootstrap": "Bootstrapping", "join": "Joining", "remove": "Removing"}


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def problems_of(
    seen: Observed | None, actions: Iterable[Action], spec: ClusterSpec | None, pending: Pending | None = None
) -> list[Problem]:
    found: list[Problem] = []
    for a in actions:
        if isinstance(a, Blocked) and a.reason != "WaitingForJoins":
            found.append(Problem(a.reason, a.message))
        elif isinstance(a, Wait) and a.reason not in PROGRESS_WAITS:
            found.append(Problem(a.reason, a.message))
    if seen is not None:
        for n in seen.nodes.values():
            if n.kind is NodeKind.UNREACHABLE and (spec is None or n.name in spec.names):
                found.append(Problem("NodeUnreachable", f"{n.name} is unreachable: {n.detail}"))
        for m in seen.members or ():
            if not m.online and not (pending is not None and pending.node == m.name):
                found.append(Problem("NodeOffline", f"{m.name} is offline in the master's node list"))
    unique: dict[tuple[str, str], Problem] = {}
    for p in found:
        unique.setdefault((p.reason, p.message), p)
    return list(unique.values())


def condition(
    previous: Iterable[Mapping[str, Any]], type_: str, ok: bool, reason: str, message: str, generation: int, now: str
) -> dict[str, Any]:
    status = "True" if ok else "False"
    before = next((c for c in previous if c.get("type") == type_), None)
    changed = before is None or before.get("status") != status
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now if changed or before is None else before.get("lastTransitionTime", now),
        "observedGeneration": generation,
    }


def build(
    *,
    previous: Mapping[str, Any],
    spec: ClusterSpec,
    seen: Observed,
    memory: Memory,
    actions: tuple[Action, ...],
    executed: Action | None,
    now: str,
) -> dict[str, Any]:
    """The whole owned status after a pass that reached the managers."""
    pending = memory.pending
    members = {m.name: m for m in seen.members or ()}
    problems = problems_of(seen, actions, spec, pending)
    applied = memory.applied_config_hash
    config_ok = spec.config_hash == (applied or EMPTY_CONFIG_HASH)
    wanted_online = sum(1 for n in spec.nodes if n.name in members and members[n.name].online)
    ready = (
        seen.master is not None
        and pending is None
        and set(members) == set(spec.names)
        and all(m.online and m.initialized for m in members.values())
        and config_ok
        and executed is None
        and not any(isinstance(a, WRITES) for a in actions)
    )
    writes = [a for a in actions if isinstance(a, WRITES)]
    progressing = bool(pending or executed or writes) and not spec.paused
    if spec.paused:
        phase = "Paused"
    elif ready:
        phase = "Ready"
    elif pending is not None:
        phase = PHASE_BY_OP[pending.op]
    elif executed is not None or writes:
        first = executed or writes[0]
        phase = type(first).__name__.replace("Bootstrap", "Bootstrapping").replace("Join", "Joining")
        phase = {"Remove": "Removing", "Configure": "Configuring"}.get(phase, phase)
    elif problems:
        phase = "Degraded"
    else:
        phase = "Waiting"
    conds_before = previous.get("conditions") or []
    gen = spec.generation
    planned = [a.describe() for a in actions][:MAX_PLANNED]
    if spec.paused and planned:
        planned = [f"paused, would {p}" for p in planned]
    progress_msg = (
        "paused: observing only"
        if spec.paused
        else (executed.describe() if executed else (planned[0] if progressing and planned else "nothing to do"))
    )
    conditions = [
        condition(
            conds_before,
            "Ready",
            ready,
            "ClusterReady" if ready else (problems[0].reason if problems else f"{phase}"),
            f"{wanted_online}/{len(spec.nodes)} nodes online, leader {seen.master}"
            if ready
            else (problems[0].message if problems else f"cluster is {phase.lower()}"),
            gen,
            now,
        ),
        condition(
            conds_before,
            "Progressing",
            progressing,
            "Paused" if spec.paused else (phase if progressing else "Reconciled"),
            progress_msg,
            gen,
            now,
        ),
        condition(
            conds_before,
            "Degraded",
            bool(problems),
            problems[0].reason if problems else "AsExpected",
            "; ".join(p.message for p in problems) if problems else "no problem observed",
            gen,
            now,
        ),
    ]
    nodes: list[dict[str, Any]] = []
    endpoints = {**memory.endpoints, **{n.name: n.endpoint for n in spec.nodes}}
    order = [n.name for n in spec.nodes] + sorted(set(members) - spec.names)
    for name in order:
        node_spec = spec.node(name)
        m = members.get(name)
        kind = seen.kind(name)
        if m is not None and kind in (NodeKind.UNKNOWN, NodeKind.UNREACHABLE):
            state = "Master" if m.master else ("Replica" if m.online else "Offline")
        else:
            state = kind.value
        nodes.append(
            {
                "name": name,
                "hostIP": m.host_ip if m else (node_spec.host_ip if node_spec else ""),
                "endpoint": endpoints.get(name, ""),
                "online": bool(m and m.online),
                "master": bool(m and m.master),
                "initialized": bool(m and m.initialized),
                "state": state,
                "member": m is not None,
            }
        )
    new_logs = sorted(
        (line for n in seen.nodes.values() for line in n.logs), key=lambda line: (line.timestamp, line.node)
    )
    logs = list(previous.get("logs") or []) + [
        {"node": line.node, "timestamp": line.timestamp, "time": rfc3339(line.timestamp / 1e6), "message": line.message}
        for line in new_logs
    ]
    cursors = dict(memory.cursors)
    for n in seen.nodes.values():
        if n.cursor:
            cursors[n.name] = n.cursor
    # Cursors of nodes that are neither in spec nor members are stale (removed nodes): dropped. Without
    # the master's list, the nodes last known as members keep theirs.
    known = spec.names | (set(members) if seen.members is not None else set(endpoints))
    cursors = {k: v for k, v in cursors.items() if k in known}
    return {
        "observedGeneration": gen,
        "phase": phase,
        "conditions": conditions,
        "initialized": seen.master is not None,
        "leader": seen.master,
        "nodes": nodes,
        "nodeSummary": f"{wanted_online}/{len(spec.nodes)}",
        "error": "; ".join(p.message for p in problems) or None,
        "logs": logs[-MAX_LOGS:],
        "logCursors": cursors,
        "appliedConfigHash": applied,
        "plannedActions": planned,
        "pending": pending.to_status() if pending else None,
    }


def blocked_before_managers(
    *, previous: Mapping[str, Any], generation: int, phase: str, reason: str, message: str, now: str
) -> dict[str, Any]:
    """Status when the pass stopped before any manager call (bad spec, Secret missing or invalid).

    Keeps what earlier passes learned of the managers (nodes, leader, pending, hash)."""
    conds_before = previous.get("conditions") or []
    kept = {k: previous.get(k) for k in OWNED if k in previous}
    return {
        **kept,
        "observedGeneration": generation,
        "phase": phase,
        "error": message,
        "plannedActions": [],
        "conditions": [
            condition(conds_before, "Ready", False, reason, message, generation, now),
            condition(conds_before, "Progressing", False, reason, message, generation, now),
            condition(conds_before, "Degraded", True, reason, message, generation, now),
        ],
    }


def merge_patch(previous: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level keys that differ (lists and objects are replaced whole, as merge patch does)."""
    patch = {k: v for k, v in desired.items() if previous.get(k) != v}
    for k in OWNED:
        if k in previous and k not in desired and previous[k] is not None:
            patch[k] = None
    return {k: v for k, v in patch.items() if not (v is None and previous.get(k) is None)}


def memory_of(status: Mapping[str, Any]) -> Memory:
    endpoints = {
        str(n["name"]): str(n["endpoint"])
        for n in status.get("nodes") or []
        if isinstance(n, Mapping) and n.get("name") and n.get("endpoint") and n.get("member")
    }
    cursors = status.get("logCursors") or {}
    return Memory(
        pending=Pending.from_status(status.get("pending")),
        applied_config_hash=status.get("appliedConfigHash") or None,
        leader=status.get("leader") or None,
        endpoints=endpoints,
        cursors={str(k): str(v) for k, v in cursors.items()} if isinstance(cursors, Mapping) else {},
    )
