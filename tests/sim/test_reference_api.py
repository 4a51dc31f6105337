"""Every section of reference/cloudify-cluster-api.md, over HTTP, and its curl examples as written
(with `<manager-ip>`, `user:password`, `<tenant-name>` and `<node-id>` filled in)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from clusterop_dev.testkit import wait_for

from .support import Manager, form, new_key

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def curl(command: str, manager: Manager, node_id: str = "") -> tuple[int, Any]:
    """Run a reference curl example with the placeholders filled in; returns (status, JSON body)."""
    filled = (
        command.replace("<manager-ip>", urlsplit(manager.endpoint).netloc)
        .replace("user:password", "admin:admin")
        .replace("<tenant-name>", "default_tenant")
        .replace("<node-id>", node_id)
    )
    assert filled.startswith("$ curl ")
    import shlex

    argv = shlex.split(filled[2:])
    argv[0] = str(CURL)
    done = subprocess.run(
        [*argv, "--silent", "--show-error", "--write-out", "\n%{http_code}"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


# The examples exactly as the reference prints them.
CURL_GET = '$ curl --header "tenant: <tenant-name>" -u user:password "http://<manager-ip>/api/v3/cluster"'
CURL_PUT = (
    '$ curl -X PUT -H "Content-Type: application/json" -H "tenant: <tenant-name>" -u user:password '
    """-d '{"host_ip": "172.20.0.2", "node_name": "manager", "encryption_key": "<REDACTED>"}' """
    '"http://<manager-ip>/api/v3/cluster"'
)
CURL_PATCH = (
    '$ curl -X PATCH -H "Content-Type: application/json" -H "tenant: <tenant-name>" '
    """-d '{"config_key": "config_value"}' -u user:password "http://<manager-ip>/api/v3/cluster\""""
)
CURL_NODES = '$ curl --header "tenant: <tenant-name>" -u user:password "http://<manager-ip>/api/v3/cluster/nodes"'
CURL_NODE = (
    '$ curl --header "tenant: <tenant-name>" -u user:password "http://<manager-ip>/api/v3/cluster/nodes/<node-id>"'
)
CURL_DELETE = (
    '$ curl -X DELETE --header "tenant: <tenant-name>" -u user:password '
    '"http://<manager-ip>/api/v3/cluster/nodes/<node-id>"'
)

Fresh = Callable[[int], list[Manager]]


# -- curl examples ---------------------------------------------------------------------------------


@needs_curl
def test_curl_get_cluster_state_uninitialized(fresh: Fresh) -> None:
    (m,) = fresh(1)
    assert curl(CURL_GET, m) == (200, {"initialized": False})


@needs_curl
def test_curl_put_as_written_answers_then_fails_on_the_placeholder_key(fresh: Fresh) -> None:
    """The example's body as written: 200 {"initialized": false} at once; `<REDACTED>` is not a
    base64 16-byte key (and 172.20.0.2 is not this machine), so the start ends FAILED with an error."""
    (m,) = fresh(1)
    assert curl(CURL_PUT, m) == (200, {"initialized": False})
    failed = m.wait_state("failed")
    assert "encryption key" in failed["error"]
    assert m.state("initialized,error") == {"initialized": False, "error": failed["error"]}


@needs_curl
def test_curl_put_with_a_real_key_bootstraps(fresh: Fresh) -> None:
    (m,) = fresh(1)
    key = new_key()
    command = CURL_PUT.replace("172.20.0.2", m.host_ip).replace("<REDACTED>", key)
    assert curl(command, m) == (200, {"initialized": False})
    m.wait_state("master")
    status, body = curl(CURL_GET, m)
    assert status == 200
    assert body == {"initialized": True, "consul": {"leader": f"{m.host_ip}:8300"}, "encryption_key": key}


@needs_curl
def test_curl_patch_nodes_node_and_delete(fresh: Fresh) -> None:
    a, b = fresh(2)
    key = form([a, b])
    status, body = curl(CURL_PATCH, a)
    assert (status, body) == (200, {"initialized": True, "error": None, "encryption_key": key})
    (cluster,) = [c for c in a.sim.clusters() if c["master"] == a.name]
    assert cluster["settings"] == {"config_key": "config_value"}

    status, body = curl(CURL_NODES, a)
    assert status == 200
    assert body == {
        "items": [
            {"initialized": True, "online": True, "master": True, "host_ip": a.host_ip, "name": a.name},
            {"initialized": True, "online": True, "master": False, "host_ip": b.host_ip, "name": b.name},
        ]
    }
    assert curl(CURL_NODE, a, node_id=a.name) == (200, body["items"][0])
    assert curl(CURL_DELETE, a, node_id=b.name) == (200, body["items"][1])
    assert [n["name"] for n in a.nodes()] == [a.name]


# -- Get Cluster State ---------------------------------------------------------------------------


def test_get_state_hides_logs_and_error_unless_included(fresh: Fresh) -> None:
    (m,) = fresh(1)
    key = form([m])
    assert m.get().json() == {"initialized": True, "consul": {"leader": f"{m.host_ip}:8300"}, "encryption_key": key}
    full = m.state()
    assert set(full) == {"initialized", "encryption_key", "consul", "error", "logs"}
    assert full["error"] is None
    assert full["logs"][-1]["message"] == "HA Cluster configuration complete"
    assert m.get(params={"_include": "logs"}).json().keys() == {"logs"}
    assert m.get(params={"_include": "error,initialized"}).json() == {"initialized": True, "error": None}


def test_logs_have_microsecond_timestamps_and_opaque_cursors(fresh: Fresh) -> None:
    import time

    (m,) = fresh(1)
    before = int(time.time() * 1_000_000)
    form([m])
    logs = m.state("logs")["logs"]
    assert len(logs) >= 2
    for entry in logs:
        assert set(entry) == {"message", "timestamp", "cursor"}
        assert isinstance(entry["timestamp"], int) and entry["timestamp"] >= before - 1_000_000
        assert entry["timestamp"] < before + 60_000_000  # microseconds, not nanoseconds
        assert isinstance(entry["cursor"], str)
    assert [e["timestamp"] for e in logs] == sorted(e["timestamp"] for e in logs)


def test_since_returns_logs_strictly_after_the_cursor(fresh: Fresh) -> None:
    (m,) = fresh(1)
    form([m])
    logs = m.state("logs")["logs"]
    for i, entry in enumerate(logs):
        after = m.get(params={"_include": "logs", "since": entry["cursor"]}).json()["logs"]
        assert after == logs[i + 1 :]
    r = m.get(params={"_include": "logs", "since": "not-a-cursor"})
    assert r.status_code == 400 and r.json()["error_code"] == "bad_parameters_error"


# -- Put Cluster State ---------------------------------------------------------------------------


def test_put_answers_uninitialized_then_bootstraps(fresh: Fresh) -> None:
    (m,) = fresh(1)
    key = new_key()
    r = m.put(key)
    assert (r.status_code, r.json()) == (200, {"initialized": False})
    master = m.wait_state("master")
    assert master["cluster"] and master["node_name"] == m.name
    assert m.state("initialized,encryption_key") == {"initialized": True, "encryption_key": key}


def test_put_with_join_addrs_joins_the_cluster_of_a_member(fresh: Fresh) -> None:
    a, b, c = fresh(3)
    key = form([a, b])
    r = c.put(key, join=["127.254.254.254", b.host_ip])  # the first address is nobody; b is a replica
    assert (r.status_code, r.json()) == (200, {"initialized": False})
    c.wait_state("replica")
    assert [n["name"] for n in a.nodes()] == [a.name, b.name, c.name]
    assert c.control()["cluster"] == a.control()["cluster"]


# -- Patch Cluster State -------------------------------------------------------------------------


def test_patch_merges_settings_and_answers_cluster_state(fresh: Fresh) -> None:
    (m,) = fresh(1)
    key = form([m])
    for body in ({"a": 1}, {"b": {"x": [1, 2]}}, {"a": 2}):
        r = m.request("PATCH", json=body)
        assert (r.status_code, r.json()) == (200, {"initialized": True, "error": None, "encryption_key": key})
    (cluster,) = [c for c in m.sim.clusters() if c["id"] == m.control()["cluster"]]
    assert cluster["settings"] == {"a": 2, "b": {"x": [1, 2]}}


# -- List / Get / Delete Cluster Nodes -----------------------------------------------------------


def test_node_list_and_get_fields(fresh: Fresh) -> None:
    a, b, c = fresh(3)
    form([a, b, c])
    items = a.nodes()
    assert [set(i) for i in items] == [{"initialized", "online", "master", "host_ip", "name"}] * 3
    assert [(i["name"], i["master"], i["online"], i["initialized"]) for i in items] == [
        (a.name, True, True, True),
        (b.name, False, True, True),
        (c.name, False, True, True),
    ]
    for item in items:
        r = a.get("/nodes/" + item["name"])
        assert (r.status_code, r.json()) == (200, item)
    assert a.get("/nodes", params={"_include": "name"}).json() == {"items": [{"name": x.name} for x in (a, b, c)]}


def test_delete_node_returns_it_and_it_never_rejoins(fresh: Fresh) -> None:
    a, b, c = fresh(3)
    key = form([a, b, c])
    before = a.get("/nodes/" + c.name).json()
    r = a.request("DELETE", "/nodes/" + c.name)
    assert (r.status_code, r.json()) == (200, before)
    assert [n["name"] for n in a.nodes()] == [a.name, b.name]
    assert c.control()["state"] == "removed"
    r = c.put(key, join=[a.host_ip])
    assert r.status_code == 400 and r.json()["error_code"] == "removed_from_cluster"
    assert r.json()["message"] == "This node was removed from the Cloudify Manager cluster"
    (cluster,) = [x for x in a.sim.clusters() if x["master"] == a.name]
    assert [m["removed"] for m in cluster["members"]] == [False, False, True]


@pytest.mark.parametrize("path", ["", "/nodes", "/nodes/x"])
def test_success_is_200_and_errors_have_the_manager_error_body(fresh: Fresh, path: str) -> None:
    (m,) = fresh(1)
    r = m.get(path, auth=None)
    assert r.status_code == 401
    body = r.json()
    assert set(body) == {"message", "error_code", "server_traceback"}
    assert isinstance(body["server_traceback"], str)


def test_wait_helper_reports_last_value() -> None:
    with pytest.raises(AssertionError, match="last=0"):
        wait_for(lambda: 0, timeout=0.05)
