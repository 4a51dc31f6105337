"""The control API: every endpoint and every fault it can inject, observed over HTTP."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from cloudify_manager_sim.harness import SimulatorError, SimulatorProcess
from clusterop_dev.testkit import wait_for

from .support import Manager, bootstrap, form, join, new_key

Fresh = Callable[[int], list[Manager]]
OwnSim = Callable[..., SimulatorProcess]


def port_accepts(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def test_health(sim: SimulatorProcess) -> None:
    assert requests.get(sim.control + "/health", timeout=5).status_code == 200
    assert sim.health()


def test_machines_view_and_add(sim: SimulatorProcess, fresh: Fresh) -> None:
    (m,) = fresh(1)
    view = sim.machine(m.host_ip)
    assert view == {
        "host_ip": m.host_ip,
        "endpoint": m.endpoint,
        "node_name": None,
        "state": "uninitialized",
        "online": True,
        "cluster": None,
        "error": None,
        "latency": 0.0,
        "pending_faults": 0,
    }
    assert m.host_ip.startswith("127.")
    added = sim.add_machines(2)
    assert len(added) == 2 and all(x["state"] == "uninitialized" for x in added)
    assert [x["host_ip"] for x in sim.machines[-2:]] == [x["host_ip"] for x in added]
    for x in added:
        assert port_accepts(x["endpoint"])
    listed = {x["host_ip"] for x in sim.machines()}
    assert {x["host_ip"] for x in added} <= listed


def test_machine_states_through_a_life(fresh: Fresh) -> None:
    a, b, c = fresh(3)
    key = new_key()
    bootstrap(a, key)
    join(b, a, key)
    assert a.control()["state"] == "master" and b.control()["state"] == "replica"
    assert a.control()["node_name"] == a.name and a.control()["cluster"] == b.control()["cluster"]
    c.sim.fail_next(c.host_ip, "start", "disk full")
    c.put(key)
    assert c.wait_state("failed")["error"] == "disk full"
    a.sim.remove(b.host_ip)
    assert b.control()["state"] == "removed"


def test_clusters_view(fresh: Fresh) -> None:
    a, b = fresh(2)
    form([a, b])
    a.request("PATCH", json={"mode": "x"})
    (cluster,) = [c for c in a.sim.clusters() if c["id"] == a.control()["cluster"]]
    assert cluster == {
        "id": a.control()["cluster"],
        "master": a.name,
        "members": [
            {
                "name": a.name,
                "host_ip": a.host_ip,
                "online": True,
                "master": True,
                "initialized": True,
                "removed": False,
                "removed_seq": None,
            },
            {
                "name": b.name,
                "host_ip": b.host_ip,
                "online": True,
                "master": False,
                "initialized": True,
                "removed": False,
                "removed_seq": None,
            },
        ],
        "settings": {"mode": "x"},
        "key_set": True,
        "bootstraps": 1,
    }


def test_offline_refuses_connections_and_online_accepts_on_the_same_port(fresh: Fresh) -> None:
    (m,) = fresh(1)
    session = requests.Session()
    assert session.get(m.url, auth=("admin", "admin"), timeout=5).status_code == 200  # a kept-alive connection
    m.sim.offline(m.host_ip)
    assert m.control()["online"] is False
    assert not port_accepts(m.endpoint)
    with pytest.raises(requests.ConnectionError):
        session.get(m.url, auth=("admin", "admin"), timeout=5)  # the open connection was closed too
    m.sim.online(m.host_ip)
    assert port_accepts(m.endpoint)
    assert session.get(m.url, auth=("admin", "admin"), timeout=5).status_code == 200
    session.close()


def test_latency_delays_answers_and_zero_clears(fresh: Fresh) -> None:
    (m,) = fresh(1)
    m.sim.latency(m.host_ip, 0.4)
    t0 = time.monotonic()
    assert m.get().status_code == 200
    assert time.monotonic() - t0 >= 0.4
    with pytest.raises(requests.Timeout):
        m.get(timeout=0.1)
    m.sim.latency(m.host_ip, 0)
    t0 = time.monotonic()
    assert m.get().status_code == 200
    assert time.monotonic() - t0 < 0.3


def test_fault_500_for_the_next_n_requests(fresh: Fresh) -> None:
    (m,) = fresh(1)
    m.sim.faults(m.host_ip, "500", 2)
    assert m.control()["pending_faults"] == 2
    assert [m.get().status_code for _ in range(3)] == [500, 500, 200]


def test_fault_reset(fresh: Fresh) -> None:
    (m,) = fresh(1)
    m.sim.faults(m.host_ip, "reset", 1)
    with pytest.raises(requests.ConnectionError):
        m.get()
    assert m.get().status_code == 200


def test_fault_reset_loses_the_request(fresh: Fresh) -> None:
    """A reset fault drops the request before it is served: the PUT did not happen."""
    (m,) = fresh(1)
    m.sim.faults(m.host_ip, "reset", 1)
    with pytest.raises(requests.ConnectionError):
        m.put(new_key())
    assert m.control()["state"] == "uninitialized"


def test_fault_reset_after_serves_then_loses_the_answer(fresh: Fresh) -> None:
    (m,) = fresh(1)
    m.sim.faults(m.host_ip, "reset-after", 1)
    with pytest.raises(requests.ConnectionError):
        m.put(new_key())
    m.wait_state("master")


def test_fault_hang_then_reset(fresh: Fresh) -> None:
    (m,) = fresh(1)
    m.sim.faults(m.host_ip, "hang", 1, hang_seconds=0.5)
    with pytest.raises(requests.Timeout):
        m.get(timeout=0.2)
    m.sim.faults(m.host_ip, "hang", 1, hang_seconds=0.3)
    t0 = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        m.get(timeout=5)
    assert time.monotonic() - t0 >= 0.3
    assert m.get().status_code == 200


def test_fault_badjson(fresh: Fresh) -> None:
    (m,) = fresh(1)
    m.sim.faults(m.host_ip, "badjson", 1)
    r = m.get()
    assert r.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        r.json()
    assert m.get().json() == {"initialized": False}


def test_faults_are_per_machine_and_counted_in_the_log(fresh: Fresh) -> None:
    a, b = fresh(2)
    a.sim.faults(a.host_ip, "500", 1)
    assert b.get().status_code == 200
    assert a.get().status_code == 500
    counts = {(c["host_ip"], c["method"], c["path"]): c["count"] for c in a.sim.requests_log()["counts"]}
    assert counts[(a.host_ip, "GET", "/api/v3/cluster")] >= 1


def test_fail_next_join(fresh: Fresh) -> None:
    a, b = fresh(2)
    key = form([a])
    a.sim.fail_next(b.host_ip, "join", "replication broke")
    b.put(key, join=[a.host_ip])
    assert b.wait_state("failed")["error"] == "replication broke"
    assert b.state("error")["error"] == "replication broke"
    join(b, a, key)  # only the next one fails


def test_remove_outside_the_operator(fresh: Fresh) -> None:
    a, b, c = fresh(3)
    form([a, b, c])
    a.sim.remove(c.host_ip)
    assert [n["name"] for n in a.nodes()] == [a.name, b.name]
    assert c.get().json()["error_code"] == "removed_from_cluster"
    a.sim.remove(a.host_ip)  # the master: re-election
    b.wait_state("master")
    with pytest.raises(SimulatorError):
        a.sim.remove(a.host_ip)


def test_set_users_replaces_the_user_table(own_sim: OwnSim) -> None:
    sim = own_sim(1)
    m = Manager(sim, sim.machines[0])
    assert m.get().status_code == 200
    sim.set_users("admin:changed:admin,ro:ro:user")
    assert m.get().status_code == 401
    assert m.get(auth=("admin", "changed")).status_code == 200
    assert m.get(auth=("ro", "ro")).status_code == 200
    with pytest.raises(SimulatorError):
        sim.set_users("broken")


def test_set_delays_at_runtime(own_sim: OwnSim) -> None:
    sim = own_sim(1, start_delay=30)
    m = Manager(sim, sim.machines[0])
    assert sim.set_delays(start_delay=0.05, failover_delay=1) == {
        "start_delay": 0.05,
        "join_delay": 0.05,
        "failover_delay": 1.0,
    }
    bootstrap(m, new_key())


def test_request_log_counts_and_reset(fresh: Fresh) -> None:
    a, b = fresh(2)
    form([a, b])
    a.sim.reset_requests()
    assert a.sim.requests_log() == {"total": 0, "counts": []}
    a.get(params={"_include": "logs"})
    a.get()
    a.get("/nodes")
    b.get()
    log = a.sim.requests_log()
    assert log["total"] == 4
    assert sorted((c["host_ip"], c["method"], c["path"], c["count"]) for c in log["counts"]) == sorted(
        [
            (a.host_ip, "GET", "/api/v3/cluster", 2),
            (a.host_ip, "GET", "/api/v3/cluster/nodes", 1),
            (b.host_ip, "GET", "/api/v3/cluster", 1),
        ]
    )
    assert not [c for c in log["counts"] if c["method"] != "GET"]  # nothing was written


@pytest.mark.parametrize(
    "method,path,body,status",
    [
        ("GET", "/nope", None, 404),
        ("POST", "/machines/127.9.9.9/offline", None, 404),
        ("POST", "/machines/{ip}/faults", {"kind": "explode"}, 400),
        ("POST", "/machines/{ip}/fail-next", {"op": "dance"}, 400),
        ("POST", "/machines/{ip}/latency", {"seconds": -1}, 400),
        ("POST", "/remove", {"host_ip": "{ip}"}, 400),
    ],
)
def test_control_errors(fresh: Fresh, method: str, path: str, body: dict[str, Any] | None, status: int) -> None:
    (m,) = fresh(1)
    if body:
        body = {k: v.replace("{ip}", m.host_ip) if isinstance(v, str) else v for k, v in body.items()}
    r = requests.request(method, m.sim.control + path.replace("{ip}", m.host_ip), json=body, timeout=5)
    assert r.status_code == status
    assert "error" in r.json()


def test_failover_delay_is_measured_from_offline(own_sim: OwnSim) -> None:
    sim = own_sim(3, failover_delay=0.8)
    a, b, c = (Manager(sim, x) for x in sim.machines)
    form([a, b, c])
    t0 = time.monotonic()
    sim.offline(a.host_ip)
    wait_for(lambda: b.control()["state"] == "master", timeout=5)
    assert 0.7 <= time.monotonic() - t0 < 3
