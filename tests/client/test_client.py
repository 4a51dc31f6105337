"""The manager client against the simulator over real HTTP: every endpoint and every error type."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop import errors
from clusterop.client import Connection, Credentials, ManagerClient, make_session, pools_for
from clusterop_dev.testkit import wait_for

KEY = base64.b64encode(b"0123456789abcdef").decode()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(machines=0, start_delay=0.05, join_delay=0.05, failover_delay=0.2) as s:
        yield s


def client(machine: dict[str, Any], password: str = "admin", timeout: float = 2.0) -> ManagerClient:
    conn = Connection(Credentials("admin", password), tenant="default_tenant", timeout=(1.0, timeout))
    return ManagerClient(machine["endpoint"], conn, make_session())


def test_lifecycle_through_every_endpoint(sim: SimulatorProcess) -> None:
    m1, m2 = sim.add_machines(2)
    c1, c2 = client(m1), client(m2)
    assert c1.state() == {"initialized": False, "error": None, "logs": []}
    with pytest.raises(errors.NotFound):
        c1.nodes()
    assert c1.start(m1["host_ip"], "n1", KEY)["initialized"] is False
    wait_for(lambda: c1.state()["initialized"], timeout=10)
    state = c1.state()
    assert "encryption_key" not in state  # never asked for: _include leaves it out
    assert state["logs"] and all(isinstance(e["timestamp"], int) for e in state["logs"])
    cursor = state["logs"][-1]["cursor"]
    assert c1.state(since=cursor)["logs"] == []
    c2.join(m2["host_ip"], "n2", KEY, [m1["host_ip"]])
    wait_for(lambda: any(n["name"] == "n2" and n["online"] for n in c1.nodes()), timeout=10)
    with pytest.raises(errors.NotMaster):
        c2.state()
    c1.configure({"heartbeat": 7})
    assert next(c for c in sim.clusters() if c["master"] == "n1")["settings"] == {"heartbeat": 7}
    c1.remove("n2")
    with pytest.raises(errors.RemovedNode):
        c2.state()
    with pytest.raises(errors.NotFound):
        c1.remove("no-such-node")


def test_wrong_password_is_unauthorized(sim: SimulatorProcess) -> None:
    (m,) = sim.add_machines(1)
    with pytest.raises(errors.Unauthorized) as e:
        client(m, password="wrong").state()
    assert e.value.status == 401 and "Authentication failed" in e.value.message
    assert "wrong" not in str(e.value)


def test_offline_is_unreachable(sim: SimulatorProcess) -> None:
    (m,) = sim.add_machines(1)
    sim.offline(m["host_ip"])
    with pytest.raises(errors.Unreachable) as e:
        client(m).state()
    assert "refused" in str(e.value)
    sim.online(m["host_ip"])
    assert client(m).state()["initialized"] is False


@pytest.mark.parametrize(
    ("kind", "error"),
    [("500", errors.ServerError), ("reset", errors.Unreachable), ("badjson", errors.BadResponse)],
)
def test_injected_faults_are_typed(sim: SimulatorProcess, kind: str, error: type[Exception]) -> None:
    (m,) = sim.add_machines(1)
    sim.faults(m["host_ip"], kind, count=1)
    with pytest.raises(error):
        client(m).state()
    assert client(m).state()["initialized"] is False  # the next request is served


def test_hang_times_out(sim: SimulatorProcess) -> None:
    (m,) = sim.add_machines(1)
    sim.faults(m["host_ip"], "hang", count=1, hang_seconds=3)
    with pytest.raises(errors.Unreachable) as e:
        client(m, timeout=0.3).state()
    assert "timed out" in str(e.value)


def test_key_never_in_error_texts(sim: SimulatorProcess) -> None:
    (m,) = sim.add_machines(1)
    sim.faults(m["host_ip"], "500", count=1)
    with pytest.raises(errors.ServerError) as e:
        client(m).start(m["host_ip"], "n1", KEY)
    assert KEY not in str(e.value)


def _sockets_to(ports: set[int]) -> int:
    """This process's established TCP connections to any of `ports` on loopback (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port, state, inode = int(fields[2].split(":")[1], 16), fields[3], fields[9]
        if state == "01" and remote_port in ports and inode in inodes:
            count += 1
    return count


def test_kept_connections_are_bounded_by_the_pool_budget(sim: SimulatorProcess) -> None:
    """One process with 10,000 clusters (30,000 managers) and a pool kept per manager ran out of
    open files at 20,000. The session keeps the `pool_hosts` managers used last; asking 40
    managers through a budget of 8 leaves at most 8 connections open, and each manager answers."""
    machines = sim.add_machines(40)
    session = make_session(pool_hosts=8)
    conn = Connection(Credentials("admin", "admin"), tenant="default_tenant", timeout=(1.0, 2.0))
    for m in machines:
        assert ManagerClient(m["endpoint"], conn, session).state()["initialized"] is False
    ports = {int(m["endpoint"].rsplit(":", 1)[1]) for m in machines}
    assert 1 <= _sockets_to(ports) <= 8
    # the operator's budget: half of the open files left after the reserve, within [64, 65536]
    assert pools_for(20_000) == (20_000 - 1024) // 2
    assert pools_for(1 << 20) == 65536 and pools_for(100) == 64
