"""The judge of the crash trials is not blind: fed simulator views that break each rule, it flags
every one (no control plane needed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from .support import Judge, SimView, fencing_violations

pytestmark = pytest.mark.chaos
IPS = ["127.9.0.1", "127.9.0.2", "127.9.0.3"]


class FakeView(SimView):
    def __init__(self, clusters: list[dict[str, Any]], machines: dict[str, dict[str, Any]] | None = None) -> None:
        self.clusters, self.machines = clusters, machines or {}

    def clusters_of(self, ips: Iterable[str]) -> list[dict[str, Any]]:
        return self.clusters

    def machines_of(self, ips: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self.machines


def member(i: int, removed: bool = False, master: bool = False) -> dict[str, Any]:
    return {"name": f"n{i}", "host_ip": IPS[i - 1], "online": True, "master": master, "initialized": True,
            "removed": removed}  # fmt: skip


def cluster(*members: dict[str, Any], bootstraps: int = 1, cid: str = "cluster-1") -> dict[str, Any]:
    master = next((m["name"] for m in members if m["master"] and not m["removed"]), None)
    return {"id": cid, "master": master, "members": list(members), "settings": {}, "bootstraps": bootstraps}


def judge(view: FakeView) -> Judge:
    return Judge(view, [{"host_ip": ip} for ip in IPS], {ip: f"n{i + 1}" for i, ip in enumerate(IPS)})


def test_a_second_bootstrap_and_a_second_cluster_are_flagged() -> None:
    j = judge(FakeView([cluster(member(1, master=True)), cluster(member(2, master=True), cid="c2", bootstraps=2)]))
    j.poll(1.0)
    assert any("2 clusters" in v for v in j.violations) and any("2 times" in v for v in j.violations)


def test_removing_a_wanted_node_is_flagged_but_not_a_dropped_one() -> None:
    j = judge(FakeView([cluster(member(1, master=True), member(2, removed=True), member(3, removed=True))]))
    j.spec_drops["n3"] = 0.5  # n3 left the spec before it was removed; n2 never did
    j.poll(1.0)
    assert j.violations == ["n2 was removed while the spec still wanted it"]


def test_a_removal_seen_before_the_spec_dropped_the_node_is_flagged() -> None:
    j = judge(FakeView([cluster(member(1, master=True), member(2, removed=True))]))
    j.spec_drops["n2"] = 5.0
    j.poll(1.0)
    assert j.violations == ["n2 was removed while the spec still wanted it"]


def test_removing_the_last_node_is_flagged() -> None:
    j = judge(FakeView([cluster(member(1, removed=True))]))
    j.spec_drops["n1"] = 0.0
    j.poll(1.0)
    assert "the last node was removed" in j.violations[0]


def test_half_joined_and_orphaned_machines_are_stray() -> None:
    machines = {
        IPS[0]: {"state": "master", "cluster": "cluster-1"},
        IPS[1]: {"state": "joining", "cluster": "cluster-1"},
        IPS[2]: {"state": "replica", "cluster": None},
    }
    j = judge(FakeView([], machines))
    assert j.stray(["n1", "n2", "n3"]) == ["n2 is joining", "n3 is replica of no cluster"]
    assert judge(FakeView([], {IPS[0]: {"state": "failed", "cluster": None}})).stray([]) == ["n1 is failed"]


def _w(host: str, method: str, agent: str, path: str = "/api/v3/cluster") -> dict[str, str]:
    return {"host_ip": host, "method": method, "path": path, "agent": agent}


def test_fencing_judge_flags_non_leaders_deposed_leaders_and_duplicate_puts() -> None:
    a0, b1 = "cloudify-cluster-operator (a; term 0)", "cloudify-cluster-operator (b; term 1)"
    assert fencing_violations([_w("1", "PUT", a0), _w("2", "PUT", a0), _w("3", "PUT", b1), _w("1", "PATCH", b1)]) == []
    assert fencing_violations([_w("1", "PUT", "cloudify-cluster-operator (a)")]) == [
        "PUT /api/v3/cluster to 1 from a non-leader ('cloudify-cluster-operator (a)')"
    ]
    assert fencing_violations([_w("1", "PUT", b1), _w("2", "PUT", a0)]) == [
        "PUT /api/v3/cluster to 2 from a deposed leader (term 0 after term 1, a)"
    ]
    assert fencing_violations([_w("1", "PUT", a0), _w("1", "PUT", b1)]) == [
        "the same PUT twice: PUT /api/v3/cluster to 1"
    ]
    assert fencing_violations([_w("1", "PUT", a0), _w("2", "PUT", "cloudify-cluster-operator (b; term 0)")]) == [
        "term 0 had two holders: a and b"
    ]
