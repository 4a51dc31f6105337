"""Failpoints for crash trials, enabled only by the CLUSTEROP_FAILPOINTS environment variable.

`CLUSTEROP_FAILPOINTS="before-write=kill@0.5,after-write=kill@0.5"` kills the process with
SIGKILL at that point with that probability (default 1). `before-write=stop#3` stops the process
(SIGSTOP: a pause, as a long GC or a frozen VM; SIGCONT resumes it right there) at the third hit
of the point only. Unset, `hit` costs one dict lookup.
Points: before-write (intent recorded, request not sent), after-write (manager answered,
outcome not yet recorded in status).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from dataclasses import dataclass


@dataclass
class _Point:
    action: str = "kill"  # kill | stop
    probability: float = 1.0
    nth: int | None = None  # fire at this hit only
    hits: int = 0


def _parse(raw: str) -> dict[str, _Point]:
    points: dict[str, _Point] = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        name, _, spec = item.partition("=")
        spec, _, nth = spec.partition("#")
        action, _, probability = spec.partition("@")
        points[name.strip()] = _Point(
            action=action.strip() or "kill",
            probability=float(probability) if probability else 1.0,
            nth=int(nth) if nth else None,
        )
    return points


_POINTS = _parse(os.environ.get("CLUSTEROP_FAILPOINTS", ""))


def hit(name: str) -> None:
    point = _POINTS.get(name)
    if point is None:
        return
    point.hits += 1
    if point.nth is not None and point.hits != point.nth:
        return
    if random.random() < point.probability:
        # One unbuffered line first, so a crash trial can tell which point fired.
        suffix = " action=stop" if point.action == "stop" else ""
        sys.stderr.write(f"FAILPOINT fired point={name}{suffix}\n")
        sys.stderr.flush()
        if point.action == "stop":
            # Directed at this thread, so it stops right here (a signal to the process may be
            # taken by another thread while this one runs on for a moment).
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
        else:
            os.kill(os.getpid(), signal.SIGKILL)
