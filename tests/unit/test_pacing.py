"""The poll schedule while a stage is in flight (clusterop.pacing): pure, the clock passed in."""

from __future__ import annotations

import pytest

from clusterop.pacing import Pacing, PacingSettings, look_times, looks_for, next_look

S = PacingSettings()

#: a pass's own time from its look to its requeue: none, a quick one, a slow one (1,000 clusters)
PASS_TIMES = [0.0, 0.02, 0.045]


def round_one_looks(stage_seconds: float) -> int:
    """The schedule this one replaced: 50 ms after the write, then 50 ms x1.6 per look up to 2 s."""
    t, looks, streak = 0.05, 1, 0
    while t < stage_seconds:
        streak += 1
        t += min(2.0, 0.05 * 1.6 ** (streak - 1))
        looks += 1
    return looks


@pytest.mark.parametrize("pass_seconds", PASS_TIMES)
@pytest.mark.parametrize("stage", [0.01, 0.07, 0.15, 0.3, 0.55, 0.8, 0.99])
def test_a_young_stage_is_seen_within_a_tenth_of_a_second_of_its_end(stage: float, pass_seconds: float) -> None:
    """Also when every pass takes a while: the looks sit on a grid counted from the write, so a
    pass's own time does not push the next look later (a delay after each pass did: at 0.3 s
    stages the end was seen 110-130 ms late)."""
    seen = look_times(stage, S, pass_seconds)[-1]
    assert seen - stage <= S.fast_every + 1e-9, (stage, seen)


@pytest.mark.parametrize("pass_seconds", PASS_TIMES)
@pytest.mark.parametrize("stage", [60.0, 120.0, 600.0])
def test_a_long_stage_costs_no_more_looks_than_round_one(stage: float, pass_seconds: float) -> None:
    assert looks_for(stage, S, pass_seconds) <= round_one_looks(stage)


#: a grid whose points are 0.05 + k x 0.1 after the write (the default's first look is sooner)
S05 = PacingSettings(fast_first=0.05)


def test_a_pass_woken_just_before_a_point_of_the_grid_does_not_look_twice() -> None:
    p = Pacing()
    next_look(p, S05, wrote=True, in_flight=True, settled=False, now=10.0)
    # A watch event woke a pass that ended at 10.14, 10 ms before the grid's 10.15.
    delay = next_look(p, S05, wrote=False, in_flight=True, settled=False, now=10.14)
    assert delay == pytest.approx(0.11)  # the grid's next point after that, 10.25


def test_the_backoff_is_bounded_and_a_settled_cluster_starts_over() -> None:
    p = Pacing()
    t = 0.0
    next_look(p, S, wrote=True, in_flight=True, settled=False, now=t)
    delays, ages = [], []
    t = S.fast_first
    for _ in range(200):
        d = next_look(p, S, wrote=False, in_flight=True, settled=False, now=t)
        delays.append(d)
        ages.append(t)
        t += d
    assert max(delays) == S.slow_max
    assert all(d <= S.fast_max for d, age in zip(delays, ages, strict=True) if age < S.slow_after)
    assert 0.9 * S.resync_seconds <= next_look(p, S, wrote=False, in_flight=False, settled=True, now=t)
    # a new stage is young again: looked at on a grid from when it was first seen
    assert next_look(p, S, wrote=False, in_flight=True, settled=False, now=t + 5) == pytest.approx(S.fast_first)


def test_a_pass_that_waited_for_a_worker_is_followed_one_step_later_not_on_the_grid() -> None:
    """A busy operator (passes queued for a worker) does not look sooner to catch the grid:
    at 1,000 forming clusters the grid's shorter delays cost ~8% of the formation time."""
    p = Pacing()
    next_look(p, S05, wrote=True, in_flight=True, settled=False, now=0.0)  # due at 0.05
    assert next_look(p, S05, wrote=False, in_flight=True, settled=False, now=0.42) == S05.fast_every  # 0.37 s late
    assert next_look(p, S05, wrote=False, in_flight=True, settled=False, now=0.54) == pytest.approx(0.11)  # on time
