"""Issue 8 (1b): manager faults driven through the simulator's control API.

Each scenario states what the operator must do. Every scenario also checks, from the
simulator's side: the operator never crashed, no second cluster, no wanted node removed, no
write the scenario forbids; and that the operator recovers by itself once the fault clears.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster
from clusterop_dev.testkit import wait_for

from .conftest import SIM_DELAYS
from .support import PASSWORD, USERS, SimView, find_secrets, secret_forms

NAME = "faulty"

pytestmark = pytest.mark.chaos


class Scenario:
    """One ManagerCluster over fresh simulator machines, with the checks every scenario shares."""

    def __init__(
        self, sim: SimulatorProcess, view: SimView, clusters: Clusters, operators: Callable[..., OperatorProcess]
    ) -> None:
        self.sim, self.view, self.clusters, self.operators = sim, view, clusters, operators
        self.machines: list[dict[str, Any]] = []
        self.nodes: list[dict[str, str]] = []
        self.op: OperatorProcess | None = None
        self.dropped: set[str] = set()

    def start(self, machines: int, *op_args: str) -> Scenario:
        self.machines = self.sim.add_machines(machines)
        self.nodes = [
            {"name": f"m{i + 1}", "hostIP": m["host_ip"], "endpoint": m["endpoint"]}
            for i, m in enumerate(self.machines)
        ]
        self.op = self.operators(extra_args=op_args)
        return self

    def ip(self, i: int) -> str:
        return self.machines[i - 1]["host_ip"]

    @property
    def ips(self) -> list[str]:
        return [m["host_ip"] for m in self.machines]

    def create(self, count: int, ready: bool = True, **kw: Any) -> None:
        self.clusters.create(manager_cluster(NAME, self.nodes[:count], **kw))
        if ready:
            self.converged([f"m{i + 1}" for i in range(count)])

    def set_nodes(self, indexes: list[int]) -> None:
        wanted = {f"m{i}" for i in indexes}
        self.dropped |= {n["name"] for n in self.nodes if n["name"] not in wanted}
        self.clusters.set_nodes(NAME, [self.nodes[i - 1] for i in indexes])

    def master(self) -> str:
        (c,) = self.view.clusters_of(self.ips)
        return str(c["master"])

    def live(self) -> set[str]:
        (c,) = self.view.clusters_of(self.ips)
        return {m["name"] for m in c["members"] if not m["removed"]}

    def writes(self) -> int:
        return self.view.writes_to(self.ips)

    def check_safe(self) -> None:
        """Never crashed; at most one cluster, bootstrapped once; nothing wanted was removed."""
        assert self.op is not None and self.op.alive and self.op.starts == 1, "the operator crashed"
        found = self.view.clusters_of(self.ips)
        assert len(found) <= 1, found
        for c in found:
            assert c["bootstraps"] == 1, c
            removed = {m["name"] for m in c["members"] if m["removed"]}
            assert removed <= self.dropped, f"removed {removed - self.dropped} that the spec wanted"
            assert any(not m["removed"] for m in c["members"]), "the last node was removed"

    def reported(self, words: str, timeout: float = 20.0) -> dict[str, Any]:
        """Status (error or a condition) and an Event both say `words` (case-insensitive)."""
        low = words.lower()

        def said() -> dict[str, Any] | None:
            self.check_safe()
            st = self.clusters.status(NAME)
            texts = [st.get("error") or ""] + [c.get("message", "") for c in st.get("conditions") or []]
            in_status = any(low in t.lower() for t in texts)
            in_event = any(low in f"{e['reason']} {e['message']}".lower() for e in self.clusters.events(NAME))
            return st if in_status and in_event else None

        return wait_for(said, timeout=timeout, interval=0.1, message=f"status and an Event to say {words!r}")

    def converged(self, names: list[str], timeout: float = 30.0) -> dict[str, Any]:
        def done() -> bool:
            self.check_safe()
            found = self.view.clusters_of(self.ips)
            if len(found) != 1:
                return False
            live = {m["name"]: m for m in found[0]["members"] if not m["removed"]}
            return set(live) == set(names) and all(m["online"] and m["initialized"] for m in live.values())

        wait_for(done, timeout=timeout, interval=0.1, message=f"the simulator to show {names}")
        st = self.clusters.wait_ready(NAME, timeout=timeout)
        self.check_safe()
        return st


@pytest.fixture
def sc(
    sim: SimulatorProcess, view: SimView, clusters: Clusters, operators: Callable[..., OperatorProcess]
) -> Iterator[Scenario]:
    s = Scenario(sim, view, clusters, operators)
    yield s
    for ip in s.ips:  # leave no fault behind for the next scenario
        sim.online(ip)
        sim.latency(ip, 0)
    sim.set_delays(**SIM_DELAYS)
    sim.set_users(USERS)


def slow_joins(sim: SimulatorProcess) -> None:
    sim.set_delays(join_delay=2.0)


# -- nodes offline ---------------------------------------------------------------------------------


def test_node_offline_during_its_join(sc: Scenario) -> None:
    """Must: keep the join's intent, say the node cannot be asked, send no other write, finish the
    join when the node is back."""
    sc.start(3)
    sc.create(2)
    slow_joins(sc.sim)
    sc.set_nodes([1, 2, 3])
    wait_for(lambda: sc.sim.machine(sc.ip(3))["state"] == "joining", timeout=10, interval=0.05)
    before = sc.writes()
    sc.sim.offline(sc.ip(3))
    sc.reported("m3")
    assert sc.writes() == before
    sc.sim.online(sc.ip(3))
    sc.converged(["m1", "m2", "m3"])


def test_node_offline_before_its_join(sc: Scenario) -> None:
    """Must: not write to it, say it cannot be joined, join it once it answers."""
    sc.start(3)
    sc.create(2)
    sc.sim.offline(sc.ip(3))
    before = sc.writes()
    sc.set_nodes([1, 2, 3])
    sc.reported("cannot join m3")
    assert sc.writes() == before
    sc.sim.online(sc.ip(3))
    sc.converged(["m1", "m2", "m3"])


def test_node_being_removed_is_offline(sc: Scenario) -> None:
    """Must: remove it through the master anyway (an offline leaver blocks nothing)."""
    sc.start(3)
    sc.create(3)
    sc.sim.offline(sc.ip(3))
    sc.set_nodes([1, 2])
    sc.converged(["m1", "m2"])
    sc.sim.online(sc.ip(3))


def test_other_member_offline_during_a_removal(sc: Scenario) -> None:
    """Must: not remove anything while another member is offline, say so, remove once it is back."""
    sc.start(4)
    sc.create(4)
    sc.sim.offline(sc.ip(2))
    before = sc.writes()
    sc.set_nodes([1, 2, 3])
    sc.reported("while m2 is offline")
    assert sc.writes() == before and "m4" in sc.live()
    sc.sim.online(sc.ip(2))
    sc.converged(["m1", "m2", "m3"])


def test_master_offline_during_scale_down(sc: Scenario) -> None:
    """Must: wait for the failover, remove nothing while the old master is offline, then remove
    the leaver through the new master."""
    sc.start(4)
    sc.create(4)
    assert sc.master() == "m1"
    sc.sim.offline(sc.ip(1))
    sc.set_nodes([1, 2, 3])
    sc.reported("m1")
    wait_for(lambda: sc.master() != "m1", timeout=20, message="the failover")
    assert "m4" in sc.live()  # not while m1 is offline
    sc.sim.online(sc.ip(1))
    sc.converged(["m1", "m2", "m3"])


def test_master_removed_from_spec_while_offline(sc: Scenario) -> None:
    """Must: let the cluster fail over, then remove the old master through the new one."""
    sc.start(3)
    sc.create(3)
    sc.sim.offline(sc.ip(1))
    sc.set_nodes([2, 3])
    sc.converged(["m2", "m3"], timeout=40)
    sc.sim.online(sc.ip(1))


def test_unreachable_node_blocks_bootstrap(sc: Scenario) -> None:
    """Must: never bootstrap while a node cannot be asked (it may already be in a cluster)."""
    sc.start(3)
    sc.sim.offline(sc.ip(3))
    sc.create(3, ready=False)
    sc.reported("not bootstrapping while m3 cannot be asked")
    assert sc.writes() == 0
    sc.sim.online(sc.ip(3))
    sc.converged(["m1", "m2", "m3"])


def test_replica_offline_in_steady_state(sc: Scenario) -> None:
    """Must: report it offline and write nothing; Ready again when it is back."""
    sc.start(3)
    sc.create(3)
    before = sc.writes()
    sc.sim.offline(sc.ip(3))
    sc.reported("m3 is offline")
    assert sc.writes() == before
    sc.sim.online(sc.ip(3))
    sc.converged(["m1", "m2", "m3"])
    assert sc.writes() == before


# -- broken answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "words"),
    [("500", "HTTP 500"), ("reset", "connection reset"), ("badjson", "not a JSON object")],
)
def test_faulty_answers_during_a_join(sc: Scenario, kind: str, words: str) -> None:
    """Must: report the broken answers, not give up, and finish the scale-up."""
    sc.start(3)
    sc.create(2)
    sc.sim.faults(sc.ip(3), kind, count=6)
    sc.set_nodes([1, 2, 3])
    sc.reported(words)
    sc.converged(["m1", "m2", "m3"])


@pytest.mark.parametrize("kind", ["500", "reset", "badjson"])
def test_faulty_master_during_a_removal(sc: Scenario, kind: str) -> None:
    """Must: remove nothing wanted, report the master's broken answers, finish the removal."""
    sc.start(3)
    sc.create(3)
    sc.sim.faults(sc.ip(1), kind, count=5)
    sc.set_nodes([1, 2])
    sc.converged(["m1", "m2"])


@pytest.mark.parametrize("kind", ["500", "reset", "badjson"])
def test_faulty_answers_during_bootstrap(sc: Scenario, kind: str) -> None:
    """Must: never bootstrap a second node while the first one answers badly."""
    sc.start(3)
    sc.sim.faults(sc.ip(1), kind, count=5)
    sc.create(3, ready=False)
    sc.reported("m1")
    sc.converged(["m1", "m2", "m3"])


def test_reset_after_the_join_put(sc: Scenario) -> None:
    """The join lands but the answer is lost. Must: keep the intent, not join twice, converge."""
    sc.start(3)
    sc.create(2)
    sc.sim.faults(sc.ip(3), "reset-after", count=1)
    sc.set_nodes([1, 2, 3])
    sc.converged(["m1", "m2", "m3"])
    puts = [w for w in sc.view.writes_by([sc.ip(3)]) if w[1] == "PUT"]
    assert sum(w[3] for w in puts) == 1, puts


def test_reset_after_the_bootstrap_put(sc: Scenario) -> None:
    """The start lands but the answer is lost. Must: never start a second cluster."""
    sc.start(3)
    sc.sim.faults(sc.ip(1), "reset-after", count=1)
    sc.create(3, ready=False)
    sc.converged(["m1", "m2", "m3"])
    puts = [w for w in sc.view.writes_by([sc.ip(1)]) if w[1] == "PUT"]
    assert sum(w[3] for w in puts) == 1, puts


def test_requests_hang_past_the_client_timeout(sc: Scenario) -> None:
    """Must: time out, say so, and carry on (the hang never blocks the other nodes)."""
    sc.start(3, "--request-timeout", "1")
    sc.create(2)
    sc.sim.faults(sc.ip(3), "hang", count=3, hang_seconds=4)
    sc.set_nodes([1, 2, 3])
    sc.reported("timed out")
    sc.converged(["m1", "m2", "m3"], timeout=40)


def test_two_seconds_of_latency_on_every_call(sc: Scenario) -> None:
    """Must: bootstrap and join correctly, only slower (the request timeout is 5 s)."""
    sc.start(3)
    for ip in sc.ips:
        sc.sim.latency(ip, 2.0)
    sc.create(2, ready=False)
    sc.converged(["m1", "m2"], timeout=60)


def test_config_patch_fails_then_succeeds(sc: Scenario) -> None:
    """Must: say the config was not applied, retry it, apply it once the master answers."""
    sc.start(2)
    sc.create(2)
    sc.sim.faults(sc.ip(1), "500", count=4)
    sc.clusters.patch(NAME, {"spec": {"config": {"heartbeat": 30}}})
    sc.reported("HTTP 500")
    sc.converged(["m1", "m2"])
    (c,) = sc.view.clusters_of(sc.ips)
    assert c["settings"] == {"heartbeat": 30}


# -- failed operations -------------------------------------------------------------------------------


def test_start_fails(sc: Scenario) -> None:
    """Must: report the failed start with the manager's words, retry on the same node only."""
    sc.start(3)
    sc.sim.fail_next(sc.ip(1), "start", "disk full while installing consul")
    sc.create(3, ready=False)
    sc.reported("disk full while installing consul")
    sc.converged(["m1", "m2", "m3"], timeout=40)
    assert {w[0] for w in sc.view.writes_by(sc.ips) if w[1] == "PUT"} == set(sc.ips)
    assert sum(w[3] for w in sc.view.writes_by([sc.ip(1)]) if w[1] == "PUT") == 2  # resent to m1 only


def test_join_fails(sc: Scenario) -> None:
    """Must: report the failed join, retry it on the same node after a backoff."""
    sc.start(3)
    sc.create(2)
    sc.sim.fail_next(sc.ip(3), "join", "replication could not start")
    sc.set_nodes([1, 2, 3])
    sc.reported("replication could not start")
    sc.converged(["m1", "m2", "m3"], timeout=40)


def test_join_refused_for_a_key_mismatch(sc: Scenario) -> None:
    """The key Secret changed after the bootstrap. Must: report the failed join, recover when
    the right key is back."""
    sc.start(3)
    sc.create(2)
    other = base64.b64encode(os.urandom(16)).decode()
    original = sc.clusters.core.read_namespaced_secret("cluster-key", sc.clusters.ns).data["encryptionKey"]
    sc.clusters.put_key(key=other)
    sc.set_nodes([1, 2, 3])
    sc.reported("join of m3 failed")
    assert "m3" not in sc.live()
    sc.clusters.put_key(key=base64.b64decode(original).decode())
    sc.converged(["m1", "m2", "m3"], timeout=40)
    assert sc.op is not None
    assert not find_secrets({"log": sc.op.log_text()}, secret_forms([other]))


def test_node_removed_outside_the_operator(sc: Scenario) -> None:
    """Must: say it can never rejoin, write nothing; Ready once the spec lets it go."""
    sc.start(3)
    sc.create(3)
    before = sc.writes()
    sc.sim.remove(sc.ip(3))
    sc.dropped.add("m3")  # removed by someone else: not the operator's doing
    sc.reported("can never rejoin")
    assert sc.writes() == before
    sc.set_nodes([1, 2])
    sc.converged(["m1", "m2"])
    assert sc.writes() == before


def test_admin_password_changed_on_the_managers(sc: Scenario) -> None:
    """Must: say the credentials were refused, write nothing; recover when the Secret follows."""
    sc.start(3)
    sc.create(2)
    new_password = "Rotated-" + base64.b32encode(os.urandom(10)).decode()
    sc.sim.set_users(f"admin:{new_password}:admin")
    before = sc.writes()
    sc.set_nodes([1, 2, 3])
    sc.reported("refused the admin credentials")
    assert sc.writes() == before
    sc.clusters.put_credentials(password=new_password)
    sc.converged(["m1", "m2", "m3"])
    assert sc.op is not None
    assert not find_secrets({"log": sc.op.log_text()}, secret_forms([new_password, PASSWORD]))
