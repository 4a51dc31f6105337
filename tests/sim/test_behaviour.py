"""Every row of reference/manager-behaviour.md, over HTTP against the simulator."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.testkit import wait_for

from .support import FAILOVER, Manager, bootstrap, form, new_key

Fresh = Callable[[int], list[Manager]]
OwnSim = Callable[..., SimulatorProcess]

# -- Transport -------------------------------------------------------------------------------------


def test_routes_have_no_trailing_slash(fresh: Fresh) -> None:
    (m,) = fresh(1)
    form([m])
    for path in ("/", "/nodes/"):
        r = m.get(path)
        assert r.status_code == 404 and r.json()["error_code"] == "not_found_error"
    r = requests.get(m.endpoint + "/api/v3/nothing", auth=("admin", "admin"), timeout=5)
    assert r.status_code == 404


def test_wrong_method_is_405(fresh: Fresh) -> None:
    (m,) = fresh(1)
    assert m.request("DELETE").status_code == 405
    assert m.request("POST", "/nodes").status_code == 405


def test_success_is_200_for_put_patch_and_delete(fresh: Fresh) -> None:
    a, b = fresh(2)
    key = new_key()
    assert a.put(key).status_code == 200
    a.wait_state("master")
    assert b.put(key, join=[a.host_ip]).status_code == 200
    b.wait_state("replica")
    assert a.request("PATCH", json={"x": 1}).status_code == 200
    assert a.request("DELETE", "/nodes/" + b.name).status_code == 200


def _basic(user: str, password: str, urlsafe: bool) -> str:
    raw = f"{user}:{password}".encode()
    return "Basic " + (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()


def test_basic_auth_in_standard_and_url_safe_base64(own_sim: OwnSim) -> None:
    password = "p>?>?~~"  # its base64 holds '+' and '/', so the URL-safe form differs
    assert _basic("op", password, False) != _basic("op", password, True)
    sim = own_sim(1, users=f"op:{password}:admin")
    m = Manager(sim, sim.machines[0])
    for urlsafe in (False, True):
        r = requests.get(m.url, headers={"Authorization": _basic("op", password, urlsafe)}, timeout=5)
        assert (r.status_code, r.json()) == (200, {"initialized": False})


def test_tenant_header_is_optional(fresh: Fresh) -> None:
    (m,) = fresh(1)
    assert m.get().status_code == 200
    assert m.get(headers={"Tenant": "default_tenant"}).status_code == 200
    assert m.get(headers={"Tenant": "any-other"}).status_code == 200


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/json; charset=utf-8", "application/x-www-form-urlencoded", None]
)
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_content_type_must_be_exactly_application_json(fresh: Fresh, method: str, content_type: str | None) -> None:
    (m,) = fresh(1)
    if method == "PATCH":
        form([m])
    headers = {"Content-Type": content_type} if content_type else {}
    r = m.request(method, data=b'{"x": 1}', headers=headers)
    if content_type is None:  # requests sends no Content-Type for raw bytes
        assert "Content-Type" not in r.request.headers
    assert r.status_code == 415
    assert r.json()["error_code"] == "unsupported_content_type_error"
    assert r.json()["message"] == "Content type must be application/json"


def test_unhandled_error_is_500_internal_server_error(fresh: Fresh) -> None:
    (m,) = fresh(1)
    m.sim.faults(m.host_ip, "500", 1)
    r = m.get()
    assert r.status_code == 500
    assert r.json()["error_code"] == "internal_server_error"
    assert set(r.json()) == {"message", "error_code", "server_traceback"}


# -- Errors table ----------------------------------------------------------------------------------


def test_no_credentials(fresh: Fresh) -> None:
    (m,) = fresh(1)
    for path in ("", "/nodes", "/nodes/x"):
        r = m.get(path, auth=None)
        assert r.status_code == 401
        assert r.json()["error_code"] == "unauthorized_error"
        assert r.json()["message"] == "User unauthorized: No authentication info provided"


@pytest.mark.parametrize("user,password", [("admin", "wrong"), ("nobody", "admin")])
def test_wrong_credentials(fresh: Fresh, user: str, password: str) -> None:
    (m,) = fresh(1)
    r = m.get(auth=(user, password))
    assert r.status_code == 401
    assert r.json() == {
        "message": f"User unauthorized: Authentication failed for <User username=`{user}`>",
        "error_code": "unauthorized_error",
        "server_traceback": r.json()["server_traceback"],
    }


def test_non_admin_reads_but_writes_are_401_in_4_0(fresh: Fresh) -> None:
    a, b = fresh(2)
    key = form([a])
    viewer = ("viewer", "viewer")
    assert a.get(auth=viewer).json() == {"initialized": True, "consul": {"leader": f"{a.host_ip}:8300"}}
    assert a.get(params={"_include": "encryption_key,initialized"}, auth=viewer).json() == {"initialized": True}
    assert a.get("/nodes", auth=viewer).status_code == 200
    assert a.get("/nodes/" + a.name, auth=viewer).status_code == 200
    writes: list[tuple[Manager, str, str, dict[str, Any] | None]] = [
        (b, "PUT", "", {"host_ip": b.host_ip, "node_name": "x", "encryption_key": key}),
        (a, "PATCH", "", {"x": 1}),
        (a, "DELETE", "/nodes/" + a.name, None),
    ]
    for m, method, path, body in writes:
        r = m.request(method, path, auth=viewer, json=body)
        assert r.status_code == 401, (method, r.text)
        assert r.json()["error_code"] == "unauthorized_error"
        assert r.json()["message"].startswith("User unauthorized: ")
    assert b.control()["state"] == "uninitialized"
    assert a.control()["state"] == "master"


def test_non_admin_writes_are_403_forbidden_with_the_4_2_option(own_sim: OwnSim) -> None:
    sim = own_sim(1, users="admin:admin:admin,viewer:viewer:user", forbidden_status=403)
    m = Manager(sim, sim.machines[0])
    r = m.put(new_key(), auth=("viewer", "viewer"))
    assert r.status_code == 403 and r.json()["error_code"] == "forbidden_error"


@pytest.mark.parametrize(
    "body,missing",
    [
        ({}, "encryption_key"),
        ({"host_ip": "1", "node_name": "n"}, "encryption_key"),
        ({"encryption_key": "k"}, "host_ip"),
        ({"encryption_key": "k", "join_addrs": []}, "host_ip"),
        ({"encryption_key": "k", "host_ip": "1"}, "node_name"),
        ({"encryption_key": "k", "join_addrs": [], "host_ip": "1"}, "node_name"),
    ],
)
def test_put_missing_fields_in_order(fresh: Fresh, body: dict[str, Any], missing: str) -> None:
    (m,) = fresh(1)
    r = m.request("PUT", json=body)
    assert r.status_code == 400
    assert r.json()["error_code"] == "bad_parameters_error"
    assert r.json()["message"] == f"Missing {missing} in json request body"
    assert m.control()["state"] == "uninitialized"


@pytest.mark.parametrize(
    "join_addrs,type_name", [("127.1.0.1", "unicode"), ({"a": 1}, "dict"), (3, "int"), (None, "NoneType")]
)
def test_join_addrs_of_wrong_type(fresh: Fresh, join_addrs: Any, type_name: str) -> None:
    (m,) = fresh(1)
    r = m.request("PUT", json={"encryption_key": "k", "join_addrs": join_addrs})  # checked before host_ip
    assert r.status_code == 400
    assert r.json()["message"] == (f"join_addrs parameter is expected to be of type list but is of type {type_name}")


def test_unknown_include_field_names_the_allowed_keys(fresh: Fresh) -> None:
    (m,) = fresh(1)
    form([m])
    r = m.get(params={"_include": "logs,bogus"})
    assert r.status_code == 400
    assert r.json()["error_code"] == "no_such_include_field_error"
    message = r.json()["message"]
    assert "bogus" in message
    for key in ("initialized", "encryption_key", "consul", "error", "logs"):
        assert key in message
    r = m.get("/nodes", params={"_include": "nope"})
    assert r.status_code == 400 and "host_ip" in r.json()["message"]


def _every_endpoint(m: Manager, key: str) -> list[requests.Response]:
    return [
        m.get(),
        m.get("/nodes"),
        m.get("/nodes/anything"),
        m.put(key, join=["127.1.0.1"]),
        m.request("PATCH", json={"x": 1}),
        m.request("DELETE", "/nodes/anything"),
    ]


def test_replica_answers_not_cluster_master_on_every_endpoint(fresh: Fresh) -> None:
    a, b = fresh(2)
    key = form([a, b])
    for r in _every_endpoint(b, key):
        assert r.status_code == 400, r.request.method
        assert r.json()["error_code"] == "not_cluster_master"
    for r in _every_endpoint(b, key)[:1]:
        assert set(r.json()) == {"message", "error_code", "server_traceback"}


def test_removed_node_answers_removed_from_cluster_forever(fresh: Fresh) -> None:
    a, b = fresh(2)
    key = form([a, b])
    assert a.request("DELETE", "/nodes/" + b.name).status_code == 200
    for _ in range(2):
        for r in [*_every_endpoint(b, key), b.put(key), b.put(key, join=[a.host_ip])]:
            assert r.status_code == 400
            assert r.json() == {
                "message": "This node was removed from the Cloudify Manager cluster",
                "error_code": "removed_from_cluster",
                "server_traceback": r.json()["server_traceback"],
            }


def test_nodes_before_a_cluster_exists_is_404(fresh: Fresh) -> None:
    (m,) = fresh(1)
    for path in ("/nodes", "/nodes/" + m.name):
        r = m.get(path)
        assert r.status_code == 404 and r.json()["error_code"] == "not_found_error"
    r = m.request("PATCH", json={"x": 1})
    assert r.status_code == 404


def test_unknown_node_id_is_404(fresh: Fresh) -> None:
    (m,) = fresh(1)
    form([m])
    for method in ("GET", "DELETE"):
        r = m.request(method, "/nodes/no-such-node")
        assert r.status_code == 404 and r.json()["error_code"] == "not_found_error"


def test_put_on_an_initialized_node_is_rejected(fresh: Fresh) -> None:
    (m,) = fresh(1)
    key = form([m])
    for r in (m.put(key), m.put(key, join=[m.host_ip])):
        assert r.status_code == 400
        assert r.json()["message"] == "This manager machine is already part of a Cloudify Manager cluster"
    (cluster,) = [c for c in m.sim.clusters() if c["id"] == m.control()["cluster"]]
    assert cluster["bootstraps"] == 1


def test_put_while_a_start_is_running_is_rejected(own_sim: OwnSim) -> None:
    sim = own_sim(1, start_delay=30)
    m = Manager(sim, sim.machines[0])
    key = new_key()
    assert m.put(key).status_code == 200
    r = m.put(key)
    assert r.status_code == 400 and "in progress" in r.json()["message"]


def test_put_on_an_initialized_node_can_be_ignored(own_sim: OwnSim) -> None:
    sim = own_sim(1, "--put-on-initialized", "ignore")
    m = Manager(sim, sim.machines[0])
    key = form([m])
    r = m.put(key)
    assert (r.status_code, r.json()) == (200, {"initialized": True})
    assert len(sim.clusters()) == 1


@pytest.mark.parametrize(
    "key", ["<REDACTED>", base64.b64encode(b"x" * 15).decode(), base64.b64encode(b"x" * 17).decode()]
)
def test_bad_key_surfaces_in_error(fresh: Fresh, key: str) -> None:
    (m,) = fresh(1)
    assert m.put(key).status_code == 200
    assert "encryption key" in m.wait_state("failed")["error"]
    assert m.state("initialized,error")["initialized"] is False


def test_mismatched_key_on_join_surfaces_in_error(fresh: Fresh) -> None:
    a, b = fresh(2)
    form([a])
    assert b.put(new_key(), join=[a.host_ip]).status_code == 200
    failed = b.wait_state("failed")
    assert "key" in failed["error"]
    assert b.state("error")["error"] == failed["error"]
    assert [n["name"] for n in a.nodes()] == [a.name]


@pytest.mark.parametrize("join_addrs", [[], ["127.254.0.1"], "uninitialized", "offline"])
def test_join_addrs_naming_no_live_member_surfaces_in_error(fresh: Fresh, join_addrs: Any) -> None:
    a, b, other = fresh(3)
    key = form([a])
    if join_addrs == "uninitialized":
        join_addrs = [other.host_ip]
    elif join_addrs == "offline":
        a.sim.offline(a.host_ip)
        join_addrs = [a.host_ip]
    assert b.put(key, join=join_addrs).status_code == 200  # [] still means join
    assert "join_addrs" in b.wait_state("failed")["error"]
    a.sim.online(a.host_ip)


def test_failed_node_can_be_started_again(fresh: Fresh) -> None:
    (m,) = fresh(1)
    m.put("bad")
    m.wait_state("failed")
    bootstrap(m, new_key())
    assert m.state("error")["error"] is None


# -- A node's life -------------------------------------------------------------------------------


def test_start_and_join_are_asynchronous_and_append_logs(own_sim: OwnSim) -> None:
    sim = own_sim(2, start_delay=0.6, join_delay=0.6)
    a, b = (Manager(sim, x) for x in sim.machines)
    key = new_key()
    a.put(key)
    assert a.get().json() == {"initialized": False}
    assert a.control()["state"] == "initializing"
    first = a.state("initialized,logs")
    assert first["initialized"] is False and first["logs"]
    a.wait_state("master")
    assert len(a.state("logs")["logs"]) > len(first["logs"])

    b.put(key, join=[a.host_ip])
    assert b.get().json() == {"initialized": False}
    assert b.control()["state"] == "joining"
    # Listed in the master's list, not online, until the join completes.
    assert a.nodes()[1] == {
        "initialized": False,
        "online": False,
        "master": False,
        "host_ip": b.host_ip,
        "name": b.name,
    }
    wait_for(lambda: b.get().status_code == 400 and b.get().json()["error_code"] == "not_cluster_master")
    wait_for(lambda: a.nodes()[1]["online"])


def test_join_as_the_cli_did_it(fresh: Fresh) -> None:
    """Members from the master's list, join_addrs = every member's host_ip, poll the joiner until
    not_cluster_master, then the master's list until the joiner is online."""
    a, b, c = fresh(3)
    key = form([a, b])
    master_key = a.state("encryption_key")["encryption_key"]
    assert master_key == key
    join_addrs = [n["host_ip"] for n in a.nodes()]
    assert c.put(master_key, join=join_addrs).status_code == 200
    wait_for(lambda: c.get().json().get("error_code") == "not_cluster_master")
    wait_for(lambda: any(n["name"] == c.name and n["online"] for n in a.nodes()))


def test_patch_master_moves_the_active_role(fresh: Fresh) -> None:
    a, b, c = fresh(3)
    form([a, b, c])
    r = a.request("PATCH", json={"master": c.name, "other": "kept"})
    assert r.status_code == 200
    assert c.control()["state"] == "master" and a.control()["state"] == "replica"
    assert [n["master"] for n in c.nodes()] == [False, False, True]
    assert a.get().json()["error_code"] == "not_cluster_master"
    (cluster,) = [x for x in a.sim.clusters() if x["master"] == c.name]
    assert cluster["settings"] == {"other": "kept"}
    r = c.request("PATCH", json={"master": "nobody"})
    assert r.status_code == 404


def test_patch_master_refuses_an_offline_node(fresh: Fresh) -> None:
    a, b, c = fresh(3)
    form([a, b, c])
    a.sim.offline(c.host_ip)
    r = a.request("PATCH", json={"master": c.name})
    assert r.status_code == 400
    a.sim.online(c.host_ip)


def test_failover_after_the_detection_delay_with_a_majority(fresh: Fresh) -> None:
    a, b, c = fresh(3)
    form([a, b, c])
    a.sim.offline(a.host_ip)
    assert b.control()["state"] == "replica"  # not before the detection delay (0.3 s)
    b.wait_state("master")
    items = b.nodes()
    assert [(n["name"], n["online"], n["master"]) for n in items] == [
        (a.name, False, False),
        (b.name, True, True),
        (c.name, True, False),
    ]
    a.sim.online(a.host_ip)
    assert a.get().json()["error_code"] == "not_cluster_master"
    assert a.control()["state"] == "replica"


def test_no_failover_without_a_majority(fresh: Fresh) -> None:
    a, b, c = fresh(3)
    form([a, b, c])
    a.sim.offline(c.host_ip)
    a.sim.offline(a.host_ip)
    time.sleep(FAILOVER * 4)  # well past the detection delay: a majority would have elected by now
    assert b.control()["state"] == "replica"
    a.sim.online(c.host_ip)  # a majority again: the election happens
    b.wait_state("master")
    a.sim.online(a.host_ip)


def test_two_node_cluster_does_not_fail_over(fresh: Fresh) -> None:
    a, b = fresh(2)
    form([a, b])
    a.sim.offline(a.host_ip)
    time.sleep(FAILOVER * 4)  # well past the detection delay
    assert b.control()["state"] == "replica"
    a.sim.online(a.host_ip)
    assert a.control()["state"] == "master"
    assert a.get().status_code == 200


def test_master_back_before_the_delay_stays_master(own_sim: OwnSim) -> None:
    sim = own_sim(3, failover_delay=30)
    a, b, c = (Manager(sim, x) for x in sim.machines)
    form([a, b, c])
    sim.offline(a.host_ip)
    sim.online(a.host_ip)
    assert a.get().status_code == 200
    assert [n["master"] for n in a.nodes()] == [True, False, False]


def test_deleting_the_master_triggers_re_election(fresh: Fresh) -> None:
    a, b, c = fresh(3)
    key = form([a, b, c])
    r = a.request("DELETE", "/nodes/" + a.name)
    assert r.status_code == 200 and r.json()["master"] is True
    assert a.get().json()["error_code"] == "removed_from_cluster"
    b.wait_state("master")
    assert [n["name"] for n in b.nodes()] == [b.name, c.name]
    assert b.put(key).status_code == 400


def test_offline_node_stays_listed_until_deleted(fresh: Fresh) -> None:
    a, b, c = fresh(3)
    form([a, b, c])
    a.sim.offline(c.host_ip)
    assert a.nodes()[2] == {"initialized": True, "online": False, "master": False, "host_ip": c.host_ip, "name": c.name}
    assert a.request("DELETE", "/nodes/" + c.name).status_code == 200
    assert [n["name"] for n in a.nodes()] == [a.name, b.name]
    a.sim.online(c.host_ip)
    assert c.get().json()["error_code"] == "removed_from_cluster"


def test_node_names_are_unique(fresh: Fresh) -> None:
    a, b = fresh(2)
    key = form([a])
    r = b.request(
        "PUT", json={"host_ip": b.host_ip, "node_name": a.name, "encryption_key": key, "join_addrs": [a.host_ip]}
    )
    assert r.status_code == 200
    assert "already in use" in b.wait_state("failed")["error"]


def test_host_ip_must_be_the_machines_own(fresh: Fresh) -> None:
    (m,) = fresh(1)
    r = m.request("PUT", json={"host_ip": "172.20.0.2", "node_name": "x", "encryption_key": new_key()})
    assert r.status_code == 200
    assert "host_ip" in m.wait_state("failed")["error"]


def test_host_ip_check_can_be_relaxed(own_sim: OwnSim) -> None:
    sim = own_sim(2, "--no-strict-host-ip")
    a, b = (Manager(sim, x) for x in sim.machines)
    key = new_key()
    a.request("PUT", json={"host_ip": "10.9.9.9", "node_name": "a", "encryption_key": key})
    a.wait_state("master")
    b.request("PUT", json={"host_ip": "10.9.9.8", "node_name": "b", "encryption_key": key, "join_addrs": ["10.9.9.9"]})
    b.wait_state("replica")
    assert [n["host_ip"] for n in a.nodes()] == ["10.9.9.9", "10.9.9.8"]


def test_many_independent_clusters(fresh: Fresh) -> None:
    machines = fresh(9)
    keys = [form(machines[i : i + 3]) for i in (0, 3, 6)]
    assert len(set(keys)) == 3
    ids = {m.control()["cluster"] for m in machines}
    assert len(ids) == 3


def test_removing_an_offline_member_can_restore_the_majority(fresh: Fresh) -> None:
    a, b, c, d = fresh(4)
    form([a, b, c, d])
    a.sim.offline(a.host_ip)
    a.sim.offline(c.host_ip)  # 2 of 4 online: no majority, no election
    with pytest.raises(AssertionError):
        wait_for(lambda: b.control()["state"] == "master", timeout=0.8)
    a.sim.remove(c.host_ip)  # 2 of 3 online
    b.wait_state("master")
    a.sim.online(a.host_ip)
    a.sim.online(c.host_ip)
