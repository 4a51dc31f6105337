"""`Reconciler.run`, the orchestrator, against an in-memory apiserver (FakeKube, with
resourceVersion conflicts) and the simulator over real HTTP: no control plane, no kopf.

`drive` does what the handler does with an Outcome: writes the status patch as a
compare-and-swap, keeps the status a write inside the pass left, and commits the problems
whose Events were posted once the write landed."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

from clusterop.client import make_session
from clusterop.kube import Kube
from clusterop.model import Phase
from clusterop.reconciler import ObjectState, Outcome, Reconciler, Settings
from clusterop.simulator.harness import SimulatorProcess

from .fakekube import FakeKube

KEY = base64.b64encode(os.urandom(16)).decode()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(0, start_delay=0.05, join_delay=0.05, failover_delay=0.2) as s:
        yield s


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as p:
        yield p


def manager_writes(sim: SimulatorProcess, ips: list[str]) -> list[tuple[str, str]]:
    return [(w["method"], w["path"]) for w in sim.writes_log() if w["host_ip"] in ips]


def asked(sim: SimulatorProcess, ips: list[str]) -> int:
    """Requests of any kind the managers at `ips` have answered so far."""
    return sum(c["count"] for c in sim.requests_log()["counts"] if c["host_ip"] in ips)


def cluster(kube: FakeKube, machines: list[dict[str, Any]], name: str = "c", **spec: Any) -> tuple[str, str]:
    nodes = [{"name": f"m{i + 1}", "hostIP": m["host_ip"], "endpoint": m["endpoint"]} for i, m in enumerate(machines)]
    kube.add_cluster(
        "ns",
        name,
        spec={
            "nodes": nodes,
            "encryptionKeySecretRef": {"name": "key"},
            "credentialsSecretRef": {"name": "admin"},
            **spec,
        },
    )
    kube.put_secret("ns", "admin", {"username": "admin", "password": "admin"})
    kube.put_secret("ns", "key", {"encryptionKey": KEY})
    return "ns", name


def reconciler(kube: FakeKube, pool: ThreadPoolExecutor) -> Reconciler:
    return Reconciler(cast(Kube, kube), make_session(), pool, Settings())


def drive(rec: Reconciler, kube: FakeKube, key: tuple[str, str], state: ObjectState) -> Outcome:
    """One pass and its status write, as handlers._run_pass does them."""
    outcome = rec.run(kube.cluster(*key), state)
    if outcome.base_status is not None:
        state.last_status, state.resource_version = outcome.base_status, outcome.resource_version
    if outcome.status_patch:
        written = kube.patch_status(*key, outcome.status_patch, outcome.resource_version)
        state.last_status = dict(written["status"])
        state.resource_version = written["metadata"]["resourceVersion"]
    if state.problems_seen is not None:
        state.last_problems, state.problems_seen = state.problems_seen, None
    return outcome


def until(
    rec: Reconciler, kube: FakeKube, key: tuple[str, str], state: ObjectState, phase: str, passes: int = 400
) -> list[Outcome]:
    """Passes until status.phase is `phase` (each pass waits as long as it asked to, capped)."""
    seen: list[Outcome] = []
    for _ in range(passes):
        seen.append(drive(rec, kube, key, state))
        if kube.cluster(*key)["status"].get("phase") == phase:
            return seen
        time.sleep(min(seen[-1].requeue_after, 0.05))
    raise AssertionError(f"no {phase} after {passes} passes: {kube.cluster(*key)['status']}")


def test_passes_bootstrap_join_and_settle_ready_then_write_nothing(
    sim: SimulatorProcess, pool: ThreadPoolExecutor
) -> None:
    ms = sim.add_machines(3)
    ips = [m["host_ip"] for m in ms]
    kube = FakeKube()
    key = cluster(kube, ms)
    rec, state = reconciler(kube, pool), ObjectState()
    outcomes = until(rec, kube, key, state, "Ready")
    posted = [e.reason for o in outcomes for e in o.events]
    assert posted.count("Bootstrapping") == 1 and posted.count("Joining") == 2 and posted[-1] == "Ready"
    log = [(w["host_ip"], w["method"]) for w in sim.writes_log() if w["host_ip"] in ips]
    assert log[0] == (ips[0], "PUT") and sorted(log) == sorted((ip, "PUT") for ip in ips), (
        "one start on m1, one join on each other node, never a second bootstrap"
    )
    writes = manager_writes(sim, ips)
    status = kube.cluster(*key)["status"]
    assert status["nodeSummary"] == "3/3" and status["leader"] == "m1" and status.get("pending") is None
    before, asked_before = list(kube.writes), asked(sim, ips)
    steady = drive(rec, kube, key, state)
    assert steady.status_patch == {} and steady.events == [] and steady.ready
    assert kube.writes == before and manager_writes(sim, ips) == writes
    assert asked(sim, ips) - asked_before == 1, "a steady pass asks one question: the leader's node list"


def test_a_missing_secret_is_pending_and_calls_no_manager(sim: SimulatorProcess, pool: ThreadPoolExecutor) -> None:
    ms = sim.add_machines(1)
    kube = FakeKube()
    key = cluster(kube, ms)
    del kube.objects[("secret", "ns", "key")]
    rec, state = reconciler(kube, pool), ObjectState()
    outcome = drive(rec, kube, key, state)
    status = kube.cluster(*key)["status"]
    assert status["phase"] == "Pending" and "does not exist yet" in status["error"]
    assert [(e.type, e.reason) for e in outcome.events] == [("Warning", "SecretMissing")]
    assert drive(rec, kube, key, state).events == [], "the same refusal is posted once"
    assert asked(sim, [ms[0]["host_ip"]]) == 0


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_key_is_invalid_never_logged_and_calls_no_manager(
    sim: SimulatorProcess, pool: ThreadPoolExecutor, bad: str
) -> None:
    ms = sim.add_machines(1)
    kube = FakeKube()
    key = cluster(kube, ms)
    kube.put_secret("ns", "key", {"encryptionKey": bad})
    outcome = drive(reconciler(kube, pool), kube, key, ObjectState())
    status = kube.cluster(*key)["status"]
    assert status["phase"] == "Invalid" and outcome.events[0].reason == "EncryptionKeyInvalid"
    assert bad not in repr(status) and bad not in repr(outcome.events)
    assert manager_writes(sim, [ms[0]["host_ip"]]) == []


def test_a_problem_is_posted_once_while_it_lasts_and_again_when_it_returns(
    sim: SimulatorProcess, pool: ThreadPoolExecutor
) -> None:
    ms = sim.add_machines(2)
    kube = FakeKube()
    key = cluster(kube, ms)
    rec, state = reconciler(kube, pool), ObjectState()
    until(rec, kube, key, state, "Ready")
    sim.offline(ms[1]["host_ip"])
    warnings: list[str] = []
    for _ in range(200):
        warnings += [e.message for e in drive(rec, kube, key, state).events if e.type == "Warning"]
        if kube.cluster(*key)["status"]["phase"] == "Degraded" and warnings:
            break
    status = kube.cluster(*key)["status"]
    assert status["phase"] == "Degraded" and warnings, status
    for _ in range(3):
        again = drive(rec, kube, key, state)
        assert [e for e in again.events if e.type == "Warning"] == [], "a lasting problem is posted once"
    assert status["error"] and all(p in status["error"] for p in warnings[-1].split("; "))
    sim.online(ms[1]["host_ip"])
    until(rec, kube, key, state, "Ready")
    assert state.last_problems == frozenset()


def test_a_paused_cluster_is_observed_and_never_written(sim: SimulatorProcess, pool: ThreadPoolExecutor) -> None:
    ms = sim.add_machines(1)
    kube = FakeKube()
    key = cluster(kube, ms)
    kube.objects[("mgrc", *key)]["metadata"]["annotations"] = {"cloudify.co/paused": "true"}
    outcome = drive(reconciler(kube, pool), kube, key, ObjectState())
    status = kube.cluster(*key)["status"]
    assert status["phase"] == Phase.PAUSED and status["plannedActions"][0].startswith("paused, would bootstrap")
    assert outcome.events == [] and manager_writes(sim, [ms[0]["host_ip"]]) == []


def test_someone_elses_status_edit_loses_the_intent_swap_and_sends_nothing(
    sim: SimulatorProcess, pool: ThreadPoolExecutor
) -> None:
    ms = sim.add_machines(1)
    kube = FakeKube()
    key = cluster(kube, ms)
    rec, state = reconciler(kube, pool), ObjectState()
    body = kube.cluster(*key)  # the watch's copy, which this loop last read
    state.resource_version = body["metadata"]["resourceVersion"]
    kube.patch_status(*key, {"phase": "EditedByAPerson"})  # a change the watch has not delivered yet
    outcome = rec.run(body, state)
    assert outcome.status_patch == {} and state.resource_version is None, "observe again, write nothing"
    assert manager_writes(sim, [ms[0]["host_ip"]]) == []
