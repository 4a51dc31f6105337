"""The fan-out of a pass's reads (clusterop.observe.Reader), against managers answering from a
table: no HTTP. The node list of the master the last pass saw is asked beside the nodes' states;
it is used only if that node is still the single master."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

from clusterop import errors
from clusterop.client import Connection, ManagerClient
from clusterop.model import ClusterSpec, Memory, Op, Pending
from clusterop.observe import Reader

CONN = Connection(None)
NAMES = ("a", "b", "c")


class Manager:
    """One manager's answers: master or replica, and the members it lists."""

    def __init__(self, name: str, master: bool, asked: Counter[str]) -> None:
        self.name, self.master, self.asked = name, master, asked

    def state(self, since: str | None = None) -> dict[str, Any]:
        self.asked[f"state {self.name}"] += 1
        if not self.master:
            raise errors.NotMaster(400, "not_cluster_master", "replica")
        return {"initialized": True}

    def nodes(self) -> list[dict[str, Any]]:
        self.asked[f"nodes {self.name}"] += 1
        if not self.master:
            raise errors.NotMaster(400, "not_cluster_master", "replica")
        return [
            {"name": n, "host_ip": f"10.0.0.{i}", "online": True, "master": n == self.name, "initialized": True}
            for i, n in enumerate(NAMES, 1)
        ]


def spec() -> ClusterSpec:
    nodes = [{"name": n, "hostIP": f"10.0.0.{i}", "endpoint": f"http://{n}"} for i, n in enumerate(NAMES, 1)]
    body = {
        "metadata": {"name": "c", "namespace": "ns", "generation": 1},
        "spec": {"nodes": nodes, "encryptionKeySecretRef": {"name": "k"}, "credentialsSecretRef": {"name": "a"}},
    }
    return ClusterSpec.parse(body)


def observe(master: str, leader: str | None) -> tuple[Any, Counter[str]]:
    asked: Counter[str] = Counter()
    managers = {f"http://{n}": Manager(n, n == master, asked) for n in NAMES}
    with ThreadPoolExecutor(8) as pool:
        reader = Reader(lambda endpoint, conn, steady: cast(ManagerClient, managers[endpoint]), pool)
        pending = Pending(Op.JOIN, "c", "10.0.0.3", "http://c", 0.0)  # forming: no steady shortcut
        seen = reader.observe(spec(), Memory(pending=pending, leader=leader), CONN)
    return seen, asked


@pytest.mark.parametrize("leader", [None, "a"])
def test_the_masters_list_is_read_once(leader: str | None) -> None:
    seen, asked = observe(master="a", leader=leader)
    assert seen.master == "a" and [m.name for m in seen.members if m.master] == ["a"]
    assert asked["nodes a"] == 1 and asked["nodes b"] == asked["nodes c"] == 0


def test_a_leader_that_is_no_longer_master_is_not_believed() -> None:
    """The last pass's master (b) answers as a replica now; c is the master: c's list it is."""
    seen, asked = observe(master="c", leader="b")
    assert seen.master == "c" and [m.name for m in seen.members if m.master] == ["c"]
    assert asked["nodes c"] == 1
