"""The poll schedule while a stage is in flight (clusterop.pacing): pure, no clock."""

from __future__ import annotations

import pytest

from clusterop.pacing import Pacing, PacingSettings, looks_for, next_look

S = PacingSettings()


def round_one_looks(stage_seconds: float) -> int:
    """The schedule this one replaced: 50 ms after the write, then 50 ms x1.6 per look up to 2 s."""
    t, looks, streak = 0.05, 1, 0
    while t < stage_seconds:
        streak += 1
        t += min(2.0, 0.05 * 1.6 ** (streak - 1))
        looks += 1
    return looks


def look_times(stage_seconds: float) -> list[float]:
    p = Pacing()
    times = [next_look(p, S, wrote=True, in_flight=True, settled=False)]
    while times[-1] < stage_seconds:
        times.append(times[-1] + next_look(p, S, wrote=False, in_flight=True, settled=False))
    return times


@pytest.mark.parametrize("stage", [0.01, 0.07, 0.15, 0.3, 0.55, 0.8, 0.99])
def test_a_young_stage_is_seen_within_a_tenth_of_a_second_of_its_end(stage: float) -> None:
    seen = look_times(stage)[-1]
    assert seen - stage <= S.fast_every + 1e-9, (stage, seen)


@pytest.mark.parametrize("stage", [60.0, 120.0, 600.0])
def test_a_long_stage_costs_no_more_looks_than_round_one(stage: float) -> None:
    assert looks_for(stage, S) <= round_one_looks(stage)


def test_the_backoff_is_bounded_and_a_settled_cluster_starts_over() -> None:
    p = Pacing()
    next_look(p, S, wrote=True, in_flight=True, settled=False)
    delays = [next_look(p, S, wrote=False, in_flight=True, settled=False) for _ in range(200)]
    assert max(delays) == S.slow_max
    assert all(d <= S.fast_max for d, t in zip(delays, _cumulative(delays), strict=True) if t < S.slow_after)
    assert 0.9 * S.resync_seconds <= next_look(p, S, wrote=False, in_flight=False, settled=True)
    assert next_look(p, S, wrote=False, in_flight=True, settled=False) == S.fast_every  # a new stage is young


def _cumulative(delays: list[float]) -> list[float]:
    out, t = [], S.fast_first
    for d in delays:
        out.append(t)
        t += d
    return out
