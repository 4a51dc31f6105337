"""Helpers for the simulator tests: a requests wrapper per machine, polling, cluster forming."""

from __future__ import annotations

import base64
import os
from typing import Any

import requests

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.testkit import wait_for

START, JOIN, FAILOVER = 0.05, 0.05, 0.3
ADMIN = ("admin", "admin")


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


class Manager:
    """One simulated manager machine spoken to with requests (admin by default)."""

    def __init__(self, sim: SimulatorProcess, machine: dict[str, Any]) -> None:
        self.sim = sim
        self.host_ip: str = machine["host_ip"]
        self.endpoint: str = machine["endpoint"]
        self.url = self.endpoint + "/api/v3/cluster"
        self.name = "node-" + self.host_ip.replace(".", "-")

    def request(self, method: str, path: str = "", auth: Any = ADMIN, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 10)
        return requests.request(method, self.url + path, auth=auth, **kw)

    def get(self, path: str = "", **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def state(self, include: str = "initialized,error,logs,encryption_key,consul") -> dict[str, Any]:
        r = self.get(params={"_include": include})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def control(self) -> dict[str, Any]:
        return self.sim.machine(self.host_ip)

    def put(self, key: str, join: Any = None, auth: Any = ADMIN, **extra: Any) -> requests.Response:
        body: dict[str, Any] = {"host_ip": self.host_ip, "node_name": self.name, "encryption_key": key}
        if join is not None:
            body["join_addrs"] = join
        body.update(extra)
        return self.request("PUT", json=body, auth=auth)

    def nodes(self) -> list[dict[str, Any]]:
        r = self.get("/nodes")
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def wait_state(self, state: str, timeout: float = 10.0) -> dict[str, Any]:
        return wait_for(lambda: (m := self.control())["state"] == state and m, timeout, interval=0.02)


def bootstrap(master: Manager, key: str) -> None:
    r = master.put(key)
    assert r.status_code == 200 and r.json() == {"initialized": False}, r.text
    master.wait_state("master")


def join(joiner: Manager, master: Manager, key: str) -> None:
    r = joiner.put(key, join=[master.host_ip])
    assert r.status_code == 200, r.text
    joiner.wait_state("replica")


def form(managers: list[Manager], key: str | None = None) -> str:
    key = key or new_key()
    bootstrap(managers[0], key)
    for m in managers[1:]:
        join(m, managers[0], key)
    return key
