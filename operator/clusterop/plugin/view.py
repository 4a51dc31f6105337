"""Pure: a ManagerCluster object -> a summary (what `-o json|yaml` prints) -> text for people.

No I/O and no clock of its own: `now` is passed in, so every output is a function of its input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..model import PAUSE_ANNOTATION, rfc3339

STATUS_LOG_LINES = 5

# ANSI colours, used only when the output is a terminal.
_CODES = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}


class Paint:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, colour: str) -> str:
        return f"\033[{_CODES[colour]}m{text}\033[0m" if self.enabled and text else text


def duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def log_entry(entry: Mapping[str, Any]) -> dict[str, str]:
    """A mirrored cluster log line with its readable time (computed for status older than `time`)."""
    when = str(entry.get("time") or rfc3339(int(entry.get("timestamp") or 0) / 1e6))
    return {"time": when, "node": str(entry.get("node", "")), "message": str(entry.get("message", ""))}


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def summary(obj: Mapping[str, Any], now: float, log_lines: int | None = STATUS_LOG_LINES) -> dict[str, Any]:
    """Everything `status` shows, as plain data."""
    meta = obj.get("metadata") or {}
    st = obj.get("status") or {}
    ready = _condition(st, "Ready")
    degraded = _condition(st, "Degraded")
    pending = st.get("pending")
    in_flight = None
    if isinstance(pending, Mapping) and pending.get("op"):
        since = float(pending.get("since") or 0.0)
        in_flight = {
            "op": pending.get("op"),
            "node": pending.get("node"),
            "endpoint": pending.get("endpoint"),
            "attempts": pending.get("attempts", 1),
            "since": since,
            "sinceTime": pending.get("sinceTime") or rfc3339(since),
            "forSeconds": round(max(0.0, now - since), 1),
        }
    logs = list(st.get("logs") or [])
    if log_lines is not None:
        logs = logs[-log_lines:] if log_lines else []
    problems = [p for p in str(st.get("error") or "").split("; ") if p] if degraded.get("status") != "False" else []
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "generation": meta.get("generation"),
        "observedGeneration": st.get("observedGeneration"),
        "ready": {"True": True, "False": False}.get(str(ready.get("status"))),
        "reason": ready.get("reason") or "",
        "message": ready.get("message") or ("the operator has not written status yet" if not st else ""),
        "phase": st.get("phase") or "Unknown",
        "paused": str((meta.get("annotations") or {}).get(PAUSE_ANNOTATION, "")).lower() == "true",
        "leader": st.get("leader") or None,
        "nodeSummary": st.get("nodeSummary") or "",
        "nodes": [
            {k: n.get(k) for k in ("name", "state", "online", "master", "endpoint", "member")}
            for n in st.get("nodes") or []
        ],
        "inFlight": in_flight,
        "plannedActions": list(st.get("plannedActions") or []),
        "problems": problems,
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message", "lastTransitionTime")}
            for c in st.get("conditions") or []
        ],
        "logs": [log_entry(e) for e in logs],
    }


def _table(rows: Sequence[Sequence[str]], widths_of: Sequence[Sequence[str]] | None = None) -> list[str]:
    """Left-aligned columns; `widths_of` are the uncoloured texts (colour codes have no width)."""
    plain = widths_of or rows
    widths = [max(len(r[i]) for r in plain) for i in range(len(plain[0]))]
    out = []
    for row, bare in zip(rows, plain, strict=True):
        cells = [cell + " " * (widths[i] - len(bare[i])) for i, cell in enumerate(row)]
        out.append("  ".join(cells).rstrip())
    return out


def _ready_word(s: Mapping[str, Any], paint: Paint) -> str:
    if s["ready"] is True:
        return paint("Ready", "green")
    if s["paused"]:
        return paint("Paused", "yellow")
    if s["problems"]:
        return paint("Not ready", "red")
    return paint("Not ready", "yellow")


def render_status(s: Mapping[str, Any], paint: Paint) -> str:
    lines = [
        f"{paint('ManagerCluster', 'bold')} {s['namespace']}/{s['name']}: {_ready_word(s, paint)}"
        f" ({s['reason'] or s['phase']}) {s['message']}".rstrip()
    ]
    generation = s["generation"]
    seen = s["observedGeneration"]
    lines.append(f"  Phase:   {s['phase']}{'   (paused: observing only)' if s['paused'] else ''}")
    lines.append(f"  Leader:  {s['leader'] or paint('none', 'red')}")
    if generation is not None and seen != generation:
        lines.append(paint(f"  Status describes generation {seen}; the spec is at {generation}", "yellow"))
    nodes = s["nodes"]
    lines.append(f"  Nodes:   {s['nodeSummary'] or '-'} online")
    if nodes:
        bare = [["NAME", "STATE", "ONLINE", "MASTER", "ENDPOINT"]]
        rows = [[paint(h, "dim") for h in bare[0]]]
        for n in nodes:
            cells = [
                str(n["name"]),
                str(n["state"] or "-"),
                "yes" if n["online"] else "no",
                "*" if n["master"] else "",
                str(n["endpoint"] or ""),
            ]
            bare.append(cells)
            colour = "green" if n["online"] else "red"
            rows.append([cells[0], paint(cells[1], colour), paint(cells[2], colour), cells[3], cells[4]])
        lines += ["    " + line for line in _table(rows, bare)]
    f = s["inFlight"]
    if f:
        lines.append(
            f"  In flight: {paint(str(f['op']), 'yellow')} {f['node']} for {duration(f['forSeconds'])}"
            f" (since {f['sinceTime']}, attempt {f['attempts']})"
        )
    else:
        lines.append("  In flight: nothing")
    if s["plannedActions"]:
        lines.append("  Planned:")
        lines += [f"    - {a}" for a in s["plannedActions"]]
    if s["problems"]:
        lines.append(paint("  Problems:", "red"))
        lines += [f"    - {p}" for p in s["problems"]]
    if s["logs"]:
        lines.append("  Cluster log (latest):")
        lines += ["    " + log_line(e, paint) for e in s["logs"]]
    return "\n".join(lines)


def log_line(entry: Mapping[str, Any], paint: Paint) -> str:
    return f"{paint(str(entry['time']), 'dim')} {entry['node']}: {entry['message']}"


def render_list(summaries: Sequence[Mapping[str, Any]], paint: Paint) -> str:
    if not summaries:
        return "No ManagerClusters found."
    bare = [["NAMESPACE", "NAME", "READY", "PHASE", "LEADER", "NODES", "IN FLIGHT", "PROBLEM"]]
    rows = [[paint(h, "dim") for h in bare[0]]]
    for s in summaries:
        f = s["inFlight"]
        cells = [
            str(s["namespace"]),
            str(s["name"]),
            {True: "True", False: "False"}.get(s["ready"], "Unknown"),
            str(s["phase"]),
            str(s["leader"] or "-"),
            str(s["nodeSummary"] or "-"),
            f"{f['op']} {f['node']} ({duration(f['forSeconds'])})" if f else "-",
            s["problems"][0] if s["problems"] else "-",
        ]
        bare.append(cells)
        colour = "green" if s["ready"] else ("red" if s["problems"] else "yellow")
        rows.append([*cells[:2], paint(cells[2], colour), *cells[3:]])
    return "\n".join(_table(rows, bare))


def render_plan(s: Mapping[str, Any], paint: Paint) -> str:
    """What the operator would do next and why, from the plan it wrote on its last pass."""
    head = f"Plan for {s['namespace']}/{s['name']}"
    lines: list[str] = []
    if s["generation"] is not None and s["observedGeneration"] != s["generation"]:
        lines.append(
            paint(
                f"{head}: the operator has not yet seen generation {s['generation']} "
                f"(status is of {s['observedGeneration']}); the plan below may change",
                "yellow",
            )
        )
    else:
        lines.append(f"{head} (generation {s['generation']}):")
    progressing = next((c for c in s["conditions"] if c["type"] == "Progressing"), None)
    if s["paused"]:
        lines.append(paint("  Paused: the operator changes nothing until `kubectl mgrc resume`; it would:", "yellow"))
    if s["inFlight"]:
        f = s["inFlight"]
        lines.append(f"  Waiting on: {f['op']} {f['node']} sent {duration(f['forSeconds'])} ago ({f['sinceTime']})")
    if s["plannedActions"]:
        lines += [f"  {i}. {a}" for i, a in enumerate(s["plannedActions"], 1)]
    else:
        lines.append("  Nothing to do: the cluster is as the spec asks." if s["ready"] else "  No action planned.")
    if progressing:
        lines.append(f"  Why: {progressing['reason']}: {progressing['message']}")
    if s["problems"]:
        lines.append(paint("  Held back by:", "red"))
        lines += [f"    - {p}" for p in s["problems"]]
    return "\n".join(lines)
