"""When to look at a cluster again: the one place that decides a pass's requeue delay.

Pure and kopf-free. A pass reports what it saw (it wrote, something is in flight, the cluster is
settled, or it is stuck on an error); `next_look` answers how many seconds until the next pass,
keeping the per-object memory in `Pacing`.

While a stage is in flight (a node starting, joining or leaving) the schedule is:

- `fast_first` after the write that began it (the stage may be over at once);
- then every `fast_every` (0.1 s) until `fast_window` (1 s) has passed, so that a stage that
  ends in its first second is seen within 0.1 s of its end;
- then backing off (x`backoff`) up to `fast_max` (2 s), and up to `slow_max` (3 s) once the stage
  has lasted `slow_after` (10 s).

The looks of the first second cost ~10 requests more than a pure backoff; the longer tail pays
them back, so that a stage of a minute costs no more looks than the schedule of round one (first
look 50 ms, then x1.6 up to 2 s): `looks_for` counts them (tests/unit/test_pacing.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Pacing", "PacingSettings", "after_crash", "after_refusal", "looks_for", "next_look", "resync"]


@dataclass(frozen=True)
class PacingSettings:
    resync_seconds: float = 30.0
    fast_first: float = 0.05  # first re-look after a write (the stage may be over at once)
    fast_every: float = 0.1  # then this often, while the stage is young
    fast_window: float = 1.0  # seconds of a stage looked at every `fast_every`
    backoff: float = 2.0
    fast_max: float = 2.0
    slow_after: float = 10.0  # a stage older than this is looked at every `slow_max` at most
    slow_max: float = 3.0
    error_max: float = 60.0


@dataclass
class Pacing:
    """Per-object pacing memory (not crash-safe: it only decides how soon to look again)."""

    streak: int = 0  # consecutive passes waiting on something
    waited: float = 0.0  # seconds of requeue delays since the stage in flight began (or was first seen)
    last: float = 0.0  # the previous requeue delay while in flight


def resync(s: PacingSettings) -> float:
    """The steady interval, jittered so a thousand clusters do not all look at the same instant."""
    return s.resync_seconds * random.uniform(0.9, 1.1)


def next_look(p: Pacing, s: PacingSettings, *, wrote: bool, in_flight: bool, settled: bool) -> float:
    """Seconds until the next pass, from what this pass saw (`settled`: Ready or Paused)."""
    if wrote:
        p.streak = 0
        p.waited = p.last = s.fast_first
        return s.fast_first
    if in_flight:
        p.streak += 1
        if p.waited < s.fast_window:
            delay = s.fast_every
        else:
            cap = s.fast_max if p.waited < s.slow_after else s.slow_max
            delay = min(cap, max(p.last, s.fast_every) * s.backoff)
        p.waited += delay
        p.last = delay
        return float(delay)
    p.waited = p.last = 0.0
    if settled:
        p.streak = 0
        return resync(s)
    p.streak += 1
    return float(min(s.error_max, s.resync_seconds, 1.0 * 2 ** min(p.streak - 1, 6)))


def looks_for(stage_seconds: float, s: PacingSettings) -> int:
    """Passes from the write that begins a stage to the first that sees it over (pass time ignored)."""
    p = Pacing()
    t = next_look(p, s, wrote=True, in_flight=True, settled=False)
    looks = 1
    while t < stage_seconds:
        t += next_look(p, s, wrote=False, in_flight=True, settled=False)
        looks += 1
    return looks


def after_refusal(p: Pacing) -> float:
    """Backoff while the spec or its Secrets stop a pass before any manager is called."""
    p.streak += 1
    p.waited = p.last = 0.0
    return float(min(30.0, 1.0 * 2 ** min(p.streak - 1, 5)))


def after_crash(p: Pacing) -> float:
    """Backoff after a pass raised (a bug or an unexpected failure): 2 s, 4 s, ... up to 60 s."""
    p.streak += 1
    p.waited = p.last = 0.0
    return float(min(60.0, 2 ** min(p.streak, 6)))
