"""Status from one pass, and the smallest merge patch that writes it. Pure: no I/O.

Only keys this module owns are written or removed; nothing that changes on every pass (no
timestamps of passes) is kept, so a steady cluster costs no status write at all. `build` is
the entry point; each part of the status has its own small function below it. Problems are
values (`model.Problem`) until they are rendered into `error` and the Degraded condition.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .model import (
    EMPTY_CONFIG_HASH,
    Action,
    Blocked,
    ClusterSpec,
    Member,
    Memory,
    NodeKind,
    Observed,
    Pending,
    Phase,
    Problem,
    Reason,
    Wait,
    Write,
    is_write,
    rfc3339,
)

__all__ = [
    "OWNED",
    "Problem",
    "blocked_before_managers",
    "build",
    "condition",
    "fingerprint",
    "memory_of",
    "merge_patch",
    "owned",
    "phase_of",
    "problems_of",
    "render_problems",
]

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


def owned(st: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `st` this operator writes (what tells its writes from someone else's)."""
    return {k: st.get(k) for k in OWNED}


def fingerprint(st: Mapping[str, Any]) -> str:
    """A short digest of `owned(st)`: equal for equal owned fields."""
    raw = json.dumps(owned(st), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


def problems_of(
    seen: Observed | None, actions: Iterable[Action], spec: ClusterSpec | None, pending: Pending | None = None
) -> list[Problem]:
    """What is wrong, in order (the planned ones first), each once."""
    found = [Problem(a.reason, a.message) for a in actions if isinstance(a, Wait | Blocked) and a.reason.is_problem]
    if seen is not None:
        for n in seen.nodes.values():
            if n.kind is NodeKind.UNREACHABLE and (spec is None or n.name in spec.names):
                found.append(Problem(Reason.NODE_UNREACHABLE, f"{n.name} is unreachable: {n.detail}"))
        for m in seen.members or ():
            if not m.online and not (pending is not None and pending.node == m.name):
                found.append(Problem(Reason.NODE_OFFLINE, f"{m.name} is offline in the master's node list"))
    return list(dict.fromkeys(found))


def render_problems(problems: Iterable[Problem]) -> str:
    """The one place problems become text: status.error, the Degraded message, a Warning Event."""
    return "; ".join(p.message for p in problems)


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
    problems: Sequence[Problem] | None = None,
) -> dict[str, Any]:
    """The whole owned status after a pass that reached the managers. `problems`: as
    `problems_of` finds them, when the caller needs them too (for its Events)."""
    pending = memory.pending
    members = {m.name: m for m in seen.members or ()}
    if problems is None:
        problems = problems_of(seen, actions, spec, pending)
    step = _step(executed, actions)
    ready = is_ready(spec, seen, memory, step)
    phase = phase_of(spec, ready, pending, step, problems)
    wanted_online = sum(1 for n in spec.nodes if n.name in members and members[n.name].online)
    planned = _planned(spec, actions)
    return {
        "observedGeneration": spec.generation,
        "phase": str(phase),
        "conditions": _conditions(
            previous.get("conditions") or [],
            spec,
            phase,
            ready=ready,
            problems=problems,
            ready_message=f"{wanted_online}/{len(spec.nodes)} nodes online, leader {seen.master}",
            progress=_progress(spec, pending, executed, step, planned),
            now=now,
        ),
        "initialized": seen.master is not None,
        "leader": seen.master,
        "nodes": _nodes(spec, seen, memory, members),
        "nodeSummary": f"{wanted_online}/{len(spec.nodes)}",
        "error": render_problems(problems) or None,
        "logs": _logs(previous, seen),
        "logCursors": _cursors(spec, seen, memory, members),
        "appliedConfigHash": memory.applied_config_hash,
        "plannedActions": planned,
        "pending": pending.to_status() if pending else None,
    }


def _step(executed: Action | None, actions: Sequence[Action]) -> Write | None:
    """The write this pass sent, else the first one planned."""
    if is_write(executed):
        return executed
    return next((a for a in actions if is_write(a)), None)


def is_ready(spec: ClusterSpec, seen: Observed, memory: Memory, step: Write | None) -> bool:
    members = {m.name: m for m in seen.members or ()}
    return (
        seen.master is not None
        and memory.pending is None
        and set(members) == set(spec.names)
        and all(m.online and m.initialized for m in members.values())
        and spec.config_hash == (memory.applied_config_hash or EMPTY_CONFIG_HASH)
        and step is None
    )


def phase_of(
    spec: ClusterSpec, ready: bool, pending: Pending | None, step: Write | None, problems: Sequence[Problem]
) -> Phase:
    if spec.paused:
        return Phase.PAUSED
    if ready:
        return Phase.READY
    if pending is not None:
        return pending.op.phase
    if step is not None:
        return step.phase
    return Phase.DEGRADED if problems else Phase.WAITING


def _planned(spec: ClusterSpec, actions: Sequence[Action]) -> list[str]:
    planned = [a.describe() for a in actions][:MAX_PLANNED]
    return [f"paused, would {p}" for p in planned] if spec.paused else planned


def _progress(
    spec: ClusterSpec, pending: Pending | None, executed: Action | None, step: Write | None, planned: Sequence[str]
) -> tuple[bool, str]:
    """Whether the cluster is progressing, and the Progressing condition's message."""
    if spec.paused:
        return False, "paused: observing only"
    progressing = bool(pending or executed or step)
    if executed is not None:
        return progressing, executed.describe()
    return progressing, planned[0] if progressing and planned else "nothing to do"


def _conditions(
    before: Sequence[Mapping[str, Any]],
    spec: ClusterSpec,
    phase: Phase,
    *,
    ready: bool,
    problems: Sequence[Problem],
    ready_message: str,
    progress: tuple[bool, str],
    now: str,
) -> list[dict[str, Any]]:
    gen = spec.generation
    worst = problems[0] if problems else None
    if ready:
        ready_reason, not_ready_message = str(Reason.CLUSTER_READY), ready_message
    else:
        ready_reason = str(worst.reason) if worst else str(phase)
        not_ready_message = worst.message if worst else f"cluster is {phase.lower()}"
    progressing, progress_message = progress
    progress_reason = str(phase) if progressing else str(Reason.RECONCILED)
    if spec.paused:
        progress_reason = str(Reason.PAUSED)
    return [
        condition(before, "Ready", ready, ready_reason, not_ready_message, gen, now),
        condition(before, "Progressing", progressing, progress_reason, progress_message, gen, now),
        condition(
            before,
            "Degraded",
            worst is not None,
            str(worst.reason) if worst else str(Reason.AS_EXPECTED),
            render_problems(problems) if problems else "no problem observed",
            gen,
            now,
        ),
    ]


def _node_state(member: Member | None, kind: NodeKind) -> str:
    """What a node is, by its own answer; the master's list when the node was not asked."""
    if member is not None and kind in (NodeKind.UNKNOWN, NodeKind.UNREACHABLE):
        return "Master" if member.master else ("Replica" if member.online else "Offline")
    return kind.value


def _endpoints(spec: ClusterSpec, memory: Memory) -> dict[str, str]:
    return {**memory.endpoints, **{n.name: n.endpoint for n in spec.nodes}}


def _nodes(spec: ClusterSpec, seen: Observed, memory: Memory, members: Mapping[str, Member]) -> list[dict[str, Any]]:
    endpoints = _endpoints(spec, memory)
    order = [n.name for n in spec.nodes] + sorted(set(members) - spec.names)
    nodes: list[dict[str, Any]] = []
    for name in order:
        node_spec = spec.node(name)
        m = members.get(name)
        nodes.append(
            {
                "name": name,
                "hostIP": m.host_ip if m else (node_spec.host_ip if node_spec else ""),
                "endpoint": endpoints.get(name, ""),
                "online": bool(m and m.online),
                "master": bool(m and m.master),
                "initialized": bool(m and m.initialized),
                "state": _node_state(m, seen.kind(name)),
                "member": m is not None,
            }
        )
    return nodes


def _logs(previous: Mapping[str, Any], seen: Observed) -> list[dict[str, Any]]:
    new_logs = sorted(
        (line for n in seen.nodes.values() for line in n.logs), key=lambda line: (line.timestamp, line.node)
    )
    logs = list(previous.get("logs") or []) + [
        {"node": line.node, "timestamp": line.timestamp, "time": rfc3339(line.timestamp / 1e6), "message": line.message}
        for line in new_logs
    ]
    return logs[-MAX_LOGS:]


def _cursors(spec: ClusterSpec, seen: Observed, memory: Memory, members: Mapping[str, Member]) -> dict[str, str]:
    cursors = dict(memory.cursors)
    for n in seen.nodes.values():
        if n.cursor:
            cursors[n.name] = n.cursor
    # Cursors of nodes that are neither in spec nor members are stale (removed nodes): dropped. Without
    # the master's list, the nodes last known as members keep theirs.
    known = spec.names | (set(members) if seen.members is not None else set(_endpoints(spec, memory)))
    return {k: v for k, v in cursors.items() if k in known}


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
