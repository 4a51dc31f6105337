"""When to look at a cluster again: the one place that decides a pass's requeue delay.

Pure and kopf-free. A pass reports what it saw (it wrote, something is in flight, the cluster is
settled, or it is stuck on an error); `next_look` answers how many seconds until the next pass,
keeping the per-object streak in `Pacing`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Pacing", "PacingSettings", "after_crash", "after_refusal", "next_look", "resync"]


@dataclass(frozen=True)
class PacingSettings:
    resync_seconds: float = 30.0
    fast_first: float = 0.1  # first re-look while something is in flight
    fast_max: float = 2.0
    error_max: float = 60.0


@dataclass
class Pacing:
    """Per-object pacing memory (not crash-safe: it only decides how soon to look again)."""

    streak: int = 0  # consecutive passes waiting on something


def resync(s: PacingSettings) -> float:
    """The steady interval, jittered so a thousand clusters do not all look at the same instant."""
    return s.resync_seconds * random.uniform(0.9, 1.1)


def next_look(p: Pacing, s: PacingSettings, *, wrote: bool, in_flight: bool, settled: bool) -> float:
    """Seconds until the next pass, from what this pass saw (`settled`: Ready or Paused)."""
    if wrote:
        p.streak = 0
        return s.fast_first
    if in_flight:
        p.streak += 1
        return float(min(s.fast_max, s.fast_first * 1.6 ** (p.streak - 1)))
    if settled:
        p.streak = 0
        return resync(s)
    p.streak += 1
    return float(min(s.error_max, s.resync_seconds, 1.0 * 2 ** min(p.streak - 1, 6)))


def after_refusal(p: Pacing) -> float:
    """Backoff while the spec or its Secrets stop a pass before any manager is called."""
    p.streak += 1
    return float(min(30.0, 1.0 * 2 ** min(p.streak - 1, 5)))


def after_crash(p: Pacing) -> float:
    """Backoff after a pass raised (a bug or an unexpected failure): 2 s, 4 s, ... up to 60 s."""
    p.streak += 1
    return float(min(60.0, 2 ** min(p.streak, 6)))
