"""When to look at a cluster again: the one place that decides a pass's requeue delay.

Pure and kopf-free. A pass reports what it saw (it wrote, something is in flight, the cluster is
settled, or it is stuck on an error); `next_look` answers how many seconds until the next pass,
keeping the per-object memory in `Pacing`.

While a stage is in flight (a node starting, joining or leaving) the schedule is:

- `fast_first` (20 ms) after the write that began it: the stage may be over at once (a
  manager with nothing to do), and the write itself (the intent's status patch, the request)
  takes 10-15 ms of that, so this look comes a few ms after the manager answered;
- then every `fast_every` (0.1 s) until `fast_window` (1 s) has passed, so that a stage that
  ends in its first second is seen within 0.1 s of its end. These looks sit on a grid counted
  from the write (`now` is the caller's monotonic clock), not one delay after the previous
  pass: a pass's own time (its reads, its status write) does not push every later look back;
- then backing off (x`backoff`) up to `fast_max` (2 s), and up to `slow_max` (3 s) once the stage
  has lasted `slow_after` (10 s).

The looks of the first second cost ~10 requests more than a pure backoff; the longer tail pays
them back, so that a stage of a minute costs no more looks than the schedule of round one (first
look 50 ms, then x1.6 up to 2 s): `looks_for` counts them (tests/unit/test_pacing.py).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Pacing", "PacingSettings", "after_crash", "after_refusal", "look_times", "looks_for", "next_look", "resync"]


@dataclass(frozen=True)
class PacingSettings:
    resync_seconds: float = 30.0
    fast_first: float = 0.02  # first re-look after a write (the stage may be over at once)
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
    began: float | None = None  # when the stage in flight began (its write) or was first seen
    last: float = 0.0  # the previous requeue delay while in flight
    due: float | None = None  # when the pass now deciding was due to look


def resync(s: PacingSettings) -> float:
    """The steady interval, jittered so a thousand clusters do not all look at the same instant."""
    return s.resync_seconds * random.uniform(0.9, 1.1)


def next_look(p: Pacing, s: PacingSettings, *, wrote: bool, in_flight: bool, settled: bool, now: float) -> float:
    """Seconds until the next pass, from what this pass saw (`settled`: Ready or Paused) at `now`."""
    late = p.due is not None and now - p.due > s.fast_every
    if wrote:
        p.streak = 0
        p.began, p.last, p.due = now, s.fast_first, now + s.fast_first
        return s.fast_first
    if in_flight:
        p.streak += 1
        if p.began is None:
            p.began = now
        age = now - p.began
        if age < s.fast_window:
            # A pass that ended more than a step after it was due waited for a worker: the
            # operator is busy (a thousand clusters forming), and looking sooner only lengthens
            # the queue; then one step after this pass, as a plain schedule would.
            delay = s.fast_every if late else _on_grid(age, s)
        else:
            cap = s.fast_max if age < s.slow_after else s.slow_max
            delay = min(cap, max(p.last, s.fast_every) * s.backoff)
        p.last, p.due = delay, now + delay
        return float(delay)
    p.began, p.last, p.due = None, 0.0, None
    if settled:
        p.streak = 0
        return resync(s)
    p.streak += 1
    return float(min(s.error_max, s.resync_seconds, 1.0 * 2 ** min(p.streak - 1, 6)))


def _on_grid(age: float, s: PacingSettings) -> float:
    """Until the next point of `fast_first + k * fast_every` after the write; a point closer
    than a fifth of the step (a pass woken just before it looked a moment ago) is skipped."""
    k = max(0, math.floor((age - s.fast_first) / s.fast_every) + 1)
    delay = s.fast_first + k * s.fast_every - age
    return delay + s.fast_every if delay < s.fast_every / 5 else delay


def looks_for(stage_seconds: float, s: PacingSettings, pass_seconds: float = 0.0) -> int:
    """Passes from the write that begins a stage (at 0) to the first that sees it over; each
    pass takes `pass_seconds` from its look to its requeue."""
    return len(look_times(stage_seconds, s, pass_seconds))


def look_times(stage_seconds: float, s: PacingSettings, pass_seconds: float = 0.0) -> list[float]:
    """When the passes after the write (at 0) look, up to the first that sees the stage over."""
    p = Pacing()
    looks = [next_look(p, s, wrote=True, in_flight=True, settled=False, now=0.0)]
    while looks[-1] < stage_seconds:
        done = looks[-1] + pass_seconds
        looks.append(done + next_look(p, s, wrote=False, in_flight=True, settled=False, now=done))
    return looks


def after_refusal(p: Pacing) -> float:
    """Backoff while the spec or its Secrets stop a pass before any manager is called."""
    p.streak += 1
    p.began, p.last, p.due = None, 0.0, None
    return float(min(30.0, 1.0 * 2 ** min(p.streak - 1, 5)))


def after_crash(p: Pacing) -> float:
    """Backoff after a pass raised (a bug or an unexpected failure): 2 s, 4 s, ... up to 60 s."""
    p.streak += 1
    p.began, p.last, p.due = None, 0.0, None
    return float(min(60.0, 2 ** min(p.streak, 6)))
