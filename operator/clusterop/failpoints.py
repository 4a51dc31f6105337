"""Failpoints for crash trials, enabled only by the CLUSTEROP_FAILPOINTS environment variable.

`CLUSTEROP_FAILPOINTS="before-write=kill@0.5,after-write=kill@0.5"` kills the process with
SIGKILL at that point with that probability (default 1). Unset, `hit` costs one dict lookup.
Points: before-write (intent recorded, request not sent), after-write (manager answered,
outcome not yet recorded in status).
"""

from __future__ import annotations

import os
import random
import signal
import sys


def _parse(raw: str) -> dict[str, float]:
    points: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        name, _, action = item.partition("=")
        _, _, probability = action.partition("@")
        points[name.strip()] = float(probability) if probability else 1.0
    return points


_POINTS = _parse(os.environ.get("CLUSTEROP_FAILPOINTS", ""))


def hit(name: str) -> None:
    probability = _POINTS.get(name)
    if probability is not None and random.random() < probability:
        # One unbuffered line first, so a crash trial can tell which point killed the process.
        sys.stderr.write(f"FAILPOINT fired point={name}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
