"""The one executor (clusterop.executor) against a real simulator over HTTP and an in-memory
apiserver with resourceVersion conflicts: the intent is a compare-and-swap recorded before the
request, a lost swap or a dropped fence sends nothing, the result says what happened."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop.client import Connection, Credentials, ManagerClient, make_session
from clusterop.executor import Executor, Held
from clusterop.kube import Kube
from clusterop.model import Bootstrap, ClusterSpec, Configure, Memory

from .fakekube import FakeKube

KEY = base64.b64encode(os.urandom(16)).decode()
CONN = Connection(Credentials("admin", "admin"), timeout=(2.0, 5.0))


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(0, start_delay=0.05, join_delay=0.05, failover_delay=0.2) as s:
        yield s


def writes(sim: SimulatorProcess, ips: list[str]) -> list[tuple[str, str]]:
    log = sim.writes_log()
    return [(w["method"], w["path"]) for w in log if w["host_ip"] in ips]


def setup(sim: SimulatorProcess, status: dict[str, Any] | None = None) -> tuple[FakeKube, str, ClusterSpec, list[str]]:
    ms = sim.add_machines(1)
    kube = FakeKube()
    version = kube.add_cluster("ns", "c", status)
    spec = ClusterSpec.parse(
        {
            "metadata": {"name": "c", "namespace": "ns", "generation": 1},
            "spec": {
                "nodes": [{"name": "m1", "hostIP": ms[0]["host_ip"], "endpoint": ms[0]["endpoint"]}],
                "encryptionKeySecretRef": {"name": "k"},
                "credentialsSecretRef": {"name": "c"},
                "config": {"heartbeat": 5},
            },
        }
    )
    return kube, version, spec, [ms[0]["host_ip"]]


def executor(kube: FakeKube, fence: Any = lambda ns, name: True) -> Executor:
    session = make_session()
    return Executor(cast(Kube, kube), lambda endpoint, conn: ManagerClient(endpoint, conn, session), fence=fence)


def test_intent_is_recorded_before_the_request(sim: SimulatorProcess) -> None:
    kube, version, spec, ips = setup(sim)
    seen_at_intent: list[list[tuple[str, str]]] = []
    kube.before_write = lambda: seen_at_intent.append(writes(sim, ips))
    result = executor(kube).execute("ns", "c", version, spec, Memory(), CONN, KEY, Bootstrap(spec.nodes[0]))
    assert seen_at_intent == [[]], "the manager got a write before the intent was recorded"
    assert result.sent and result.held is None and not result.failed
    assert [e.reason for e in result.events] == ["Bootstrapping"]
    assert result.memory.pending is not None and result.memory.pending.op == "bootstrap"
    assert result.written is not None and result.written["pending"]["node"] == "m1"
    assert result.resource_version == kube.cluster("ns", "c")["metadata"]["resourceVersion"]
    assert writes(sim, ips) == [("PUT", "/api/v3/cluster")]


def test_a_lost_compare_and_swap_sends_nothing(sim: SimulatorProcess) -> None:
    kube, version, spec, ips = setup(sim)
    kube.patch_status("ns", "c", {"phase": "Edited"})  # someone else moved since the pass observed
    result = executor(kube).execute("ns", "c", version, spec, Memory(), CONN, KEY, Bootstrap(spec.nodes[0]))
    assert result.held is Held.CONFLICT and not result.sent and result.written is None
    assert "pending" not in kube.cluster("ns", "c")["status"]
    assert writes(sim, ips) == []


def test_no_lease_no_intent_no_request(sim: SimulatorProcess) -> None:
    kube, version, spec, ips = setup(sim)
    result = executor(kube, fence=lambda ns, name: False).execute(
        "ns", "c", version, spec, Memory(), CONN, KEY, Bootstrap(spec.nodes[0])
    )
    assert result.held is Held.NOT_LEADER and not result.sent
    assert kube.writes == [] and writes(sim, ips) == []


def test_a_lease_lost_after_the_intent_keeps_the_intent_and_sends_nothing(sim: SimulatorProcess) -> None:
    kube, version, spec, ips = setup(sim)
    answers = iter([True, False])  # held before the intent, gone right after (a pause, a partition)
    result = executor(kube, fence=lambda ns, name: next(answers)).execute(
        "ns", "c", version, spec, Memory(), CONN, KEY, Bootstrap(spec.nodes[0])
    )
    assert result.held is Held.NOT_LEADER and not result.sent
    assert result.written is not None and kube.cluster("ns", "c")["status"]["pending"]["op"] == "bootstrap"
    assert writes(sim, ips) == []


def test_config_patch_goes_through_the_same_swap(sim: SimulatorProcess) -> None:
    kube, version, spec, ips = setup(sim)
    ex = executor(kube)
    boot = ex.execute("ns", "c", version, spec, Memory(), CONN, KEY, Bootstrap(spec.nodes[0]))
    stale = version  # a pass planned on the version before the bootstrap's intent
    configure = Configure(spec.config_json, "m1")
    held = ex.execute("ns", "c", stale, spec, boot.memory, CONN, KEY, configure)
    assert held.held is Held.CONFLICT and writes(sim, ips) == [("PUT", "/api/v3/cluster")]
    deadline = time.monotonic() + 10
    while ManagerClient(spec.nodes[0].endpoint, CONN, make_session()).state().get("initialized") is not True:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = ex.execute("ns", "c", boot.resource_version, spec, boot.memory, CONN, KEY, configure)
    assert done.sent and done.memory.applied_config_hash == spec.config_hash
    assert [e.reason for e in done.events] == ["ConfigApplied"]
    assert writes(sim, ips) == [("PUT", "/api/v3/cluster"), ("PATCH", "/api/v3/cluster")]


def test_a_manager_error_is_a_typed_failure_and_the_intent_stays(sim: SimulatorProcess) -> None:
    kube, version, spec, ips = setup(sim)
    sim.faults(ips[0], "500")
    result = executor(kube).execute("ns", "c", version, spec, Memory(), CONN, KEY, Bootstrap(spec.nodes[0]))
    assert result.sent and result.failed and [e.reason for e in result.events] == ["BootstrapFailed"]
    assert kube.cluster("ns", "c")["status"]["pending"]["op"] == "bootstrap"
