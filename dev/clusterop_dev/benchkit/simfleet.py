"""Several simulator processes as one, for fleets larger than one loopback address holds.

Each simulated manager is a listening socket with a port from the ephemeral range of its
address (32768-60999 here: 28,232 ports), so 30,000 managers (10,000 clusters) do not fit on
127.0.0.1. `SimFleet(k)` starts k simulators bound to 127.0.0.2 ... 127.0.0.(k+1) (all of
127/8 is loopback, no set-up needed) and deals batches of machines to them in turn; a batch is
a whole number of clusters (a cluster's managers must share a simulator: joins happen inside
one), so callers add machines in multiples of 3. With k = 1 it is one simulator on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from types import TracebackType
from typing import Any

from cloudify_manager_sim.harness import SimulatorProcess


class SimFleet:
    def __init__(self, count: int = 1, **options: Any) -> None:
        hosts = ["127.0.0.1"] if count <= 1 else [f"127.0.0.{2 + i}" for i in range(count)]
        self._stack = ExitStack()
        try:
            self.sims = [self._stack.enter_context(SimulatorProcess(host=h, **options)) for h in hosts]
        except BaseException:
            self._stack.close()
            raise
        self._next = 0

    @property
    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.sims]

    def add_machines(self, n: int) -> list[dict[str, Any]]:
        """`n` machines, all on one simulator (the next in turn)."""
        sim = self.sims[self._next % len(self.sims)]
        self._next += 1
        return sim.add_machines(n)

    def set_delays(self, **delays: float) -> None:
        for s in self.sims:
            s.set_delays(**delays)

    def reset_requests(self) -> None:
        for s in self.sims:
            s.reset_requests()

    def requests_log(self) -> dict[str, Any]:
        """The simulators' request counts, together ({"counts": [...]})."""
        return {"counts": [c for s in self.sims for c in s.requests_log()["counts"]]}

    def __iter__(self) -> Iterator[SimulatorProcess]:
        return iter(self.sims)

    def __enter__(self) -> SimFleet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()
