"""Fixtures for the simulator tests: real `cloudify-manager-sim` processes spoken to over HTTP.

`sim` is one process for the whole module set (short delays); every test takes fresh machines
from it with `fresh(n)`, so tests never share a machine. Tests that change process-wide state
(users, delays, CLI options) start their own process with `own_sim(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cloudify_manager_sim.harness import SimulatorProcess

from .support import FAILOVER, JOIN, START, Manager


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorProcess]:
    """One simulator process (users admin:admin:admin and viewer:viewer:user, short delays)."""
    with SimulatorProcess(
        3,
        start_delay=START,
        join_delay=JOIN,
        failover_delay=FAILOVER,
        users="admin:admin:admin,viewer:viewer:user",
    ) as process:
        yield process


@pytest.fixture
def fresh(sim: SimulatorProcess) -> Callable[[int], list[Manager]]:
    """fresh(n): n machines nobody else uses, uninitialized."""

    def make(n: int) -> list[Manager]:
        return [Manager(sim, m) for m in sim.add_machines(n)]

    return make


@pytest.fixture
def own_sim() -> Iterator[Callable[..., SimulatorProcess]]:
    """own_sim(machines, *cli_args, **harness_kw): a dedicated process, stopped after the test."""
    started: list[SimulatorProcess] = []

    def start(machines: int = 3, *args: str, **kw: Any) -> SimulatorProcess:
        kw.setdefault("start_delay", START)
        kw.setdefault("join_delay", JOIN)
        kw.setdefault("failover_delay", FAILOVER)
        process = SimulatorProcess(machines, extra_args=args, **kw)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
