"""Issue 14: two operator processes under Lease leader election, judged from the managers' side
(the simulator's write log: every write carries its sender's leader term, see
support.fencing_violations).

* Two instances started at the same instant never send the same PUT twice.
* A leader stopped (SIGSTOP) right before a write, for longer than its lease, while the other
  took over and acted, sends no manager write after SIGCONT.
* Randomized trials (CHAOS_LE_TRIALS, default 2; `make chaos` runs more): a cluster is created,
  grown, shrunk and reconfigured while the leader is SIGKILLed, SIGSTOPped past its lease,
  SIGTERMed (hand-over), or the apiserver restarts, right after each spec change. Failover
  (SIGKILL -> the next manager write, by the new leader) and hand-over (SIGTERM -> the same) are
  measured from the simulator's clock.

The operators run with a short lease (4 s, renew deadline 3 s, retry 0.5 s) to keep the suite
quick; the defaults are client-go's (15 / 10 / 2 s).
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster, node_specs
from clusterop_dev.testbed import Cluster
from clusterop_dev.testkit import wait_for

from .conftest import SEED
from .support import Judge, SimView, fencing_violations, term_of

pytestmark = pytest.mark.chaos
LEASE, RENEW, RETRY = 4.0, 3.0, 0.5
LE_TRIALS = int(os.environ.get("CHAOS_LE_TRIALS") or 2)
FIGURES: dict[str, list[float]] = {"failover": [], "handover": []}


def le_args(namespace: str) -> list[str]:
    return [
        "--leader-elect",
        "--leader-elect-lease-namespace", namespace,
        "--leader-elect-lease-duration", str(LEASE),
        "--leader-elect-renew-deadline", str(RENEW),
        "--leader-elect-retry-period", str(RETRY),
    ]  # fmt: skip


def holder(api: ApiClient, namespace: str) -> str:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease("cloudify-cluster-operator", namespace)
    except client.exceptions.ApiException:
        return ""
    return str(lease.spec.holder_identity or "")


def leader_of(api: ApiClient, namespace: str, ops: list[OperatorProcess]) -> OperatorProcess | None:
    """The live process whose identity (host_pid_random) holds the Lease."""
    who = holder(api, namespace)
    return next((op for op in ops if op.alive and op.proc is not None and f"_{op.proc.pid}_" in who), None)


def ips_of(ms: list[dict[str, Any]]) -> list[str]:
    return [m["host_ip"] for m in ms]


def test_two_instances_started_at_the_same_instant_never_send_the_same_put_twice(
    sim: SimulatorProcess,
    view: SimView,
    clusters: Clusters,
    operators: Callable[..., OperatorProcess],
) -> None:
    ms = sim.add_machines(3)
    # The object exists first, so both instances find work on their very first pass.
    clusters.create(manager_cluster("twins", node_specs(ms)))
    pair = [operators(extra_args=le_args(clusters.ns), start=False) for _ in range(2)]
    for op in pair:
        op.start()
    clusters.wait_ready("twins", timeout=60)
    log = view.write_log(ips_of(ms))
    assert fencing_violations(log) == []
    assert {term_of(w) for w in log} == {0}, "one leader did every write"
    assert [w["method"] for w in log] == ["PUT", "PUT", "PUT"]  # one start, two joins, no more


def test_a_leader_paused_past_its_lease_sends_nothing_after_it_resumes(
    kube_api: ApiClient,
    sim: SimulatorProcess,
    view: SimView,
    clusters: Clusters,
    operators: Callable[..., OperatorProcess],
) -> None:
    ms = sim.add_machines(3)
    nodes = node_specs(ms)
    # The first instance stops itself right before its third manager write (the scale-up's join),
    # its intent recorded: the worst moment, as a GC pause or a frozen VM would strike.
    first = operators(extra_args=le_args(clusters.ns), env={"CLUSTEROP_FAILPOINTS": "before-write=stop#3"})
    wait_for(lambda: leader_of(kube_api, clusters.ns, [first]), timeout=30, message="the first to lead")
    second = operators(extra_args=le_args(clusters.ns))
    clusters.create(manager_cluster("pause", nodes[:2]))
    clusters.wait_ready("pause", timeout=60)
    clusters.set_nodes("pause", nodes)
    wait_for(lambda: "action=stop" in first.log_text(), timeout=30, message="the first to stop at its write")
    assert first.proc is not None
    stopped_at = time.monotonic()
    wait_for(lambda: leader_of(kube_api, clusters.ns, [second]), timeout=30, message="the second to take over")
    wait_for(
        lambda: "manager-3" in live(view, ms), timeout=60, message="the second to join manager-3 (after the intent)"
    )
    assert time.monotonic() - stopped_at > LEASE
    acted = len(view.write_log(ips_of(ms)))
    first.proc.send_signal(signal.SIGCONT)  # it resumes right before the join it had planned
    wait_for(lambda: "Stopped leading" in first.log_text(), timeout=30, message="the first to step down")
    time.sleep(2 * RETRY + 1)
    log = view.write_log(ips_of(ms))
    assert fencing_violations(log) == []
    assert len(log) == acted, f"the resumed instance wrote: {log[acted:]}"
    assert "Held back write" in first.log_text() and "reason=NotLeader" in first.log_text()
    clusters.wait_ready("pause", timeout=30)


def live(view: SimView, ms: list[dict[str, Any]]) -> set[str]:
    found = view.clusters_of(ips_of(ms))
    return {m["name"] for c in found for m in c["members"] if not m["removed"] and m["online"] and m["initialized"]}


# -- randomized trials ---------------------------------------------------------------------------

ACTIONS = ("kill", "pause", "term", "apiserver", "none")


@dataclass
class LeaderTrial:
    index: int
    rng: random.Random
    testbed: Cluster
    api: ApiClient
    sim: SimulatorProcess
    view: SimView
    clusters: Clusters
    operators: Callable[..., OperatorProcess]
    ops: list[OperatorProcess] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    failover: list[float] = field(default_factory=list)
    handover: list[float] = field(default_factory=list)

    def run(self) -> None:
        rng = self.rng
        size, grow = rng.randint(3, 4), rng.randint(1, 2)
        ms = self.sim.add_machines(size + grow)
        nodes = node_specs(ms, prefix=f"le{self.index}")
        self.ms = ms
        judge = Judge(self.view, ms, {n["hostIP"]: n["name"] for n in nodes})
        self.ops = [self.operators(extra_args=le_args(self.clusters.ns), start=False) for _ in range(2)]
        for op in self.ops:
            op.start()
        name = f"le{self.index}"
        config: dict[str, Any] = {"trial": self.index}
        want = nodes[:size]
        self.step(judge, want, config, lambda: self.clusters.create(manager_cluster(name, want, config=config)))
        want = nodes[: size + grow]
        self.step(judge, want, config, lambda: self.clusters.set_nodes(name, want))
        drops = rng.sample(want[1:], rng.randint(1, 2))
        keep = [n for n in want if n not in drops]

        def shrink() -> None:
            for d in drops:
                judge.spec_drops[d["name"]] = time.monotonic()
            self.clusters.set_nodes(name, keep)

        self.step(judge, keep, config, shrink)
        config["generation"] = 2
        self.step(judge, keep, config, lambda: self.clusters.patch(name, {"spec": {"config": dict(config)}}))
        self.violations.extend(judge.violations)
        self.violations.extend(fencing_violations(self.view.write_log(ips_of(ms))))

    def step(
        self, judge: Judge, want: list[dict[str, str]], config: dict[str, Any], change: Callable[[], None]
    ) -> None:
        # The chaos strikes the leader of the moment, right after the change: the next write
        # must come from whoever leads next.
        if not any(op.alive for op in self.ops):
            self.ops[0].start()
        leader = wait_for(lambda: leader_of(self.api, self.clusters.ns, self.ops), timeout=30, message="a leader")
        action = self.rng.choice(ACTIONS)
        self.actions.append(action)
        before = len(self.view.write_log(ips_of(self.ms)))
        newest = max((t for w in self.view.write_log(ips_of(self.ms)) if (t := term_of(w)) is not None), default=-1)
        change()
        struck = time.time()
        paused: OperatorProcess | None = None
        if action == "kill":
            leader.kill()
        elif action == "term":
            leader.stop(timeout=15)
        elif action == "pause":
            assert leader.proc is not None
            leader.proc.send_signal(signal.SIGSTOP)
            paused = leader
        elif action == "apiserver" and hasattr(self.testbed, "restart_apiserver"):
            self.testbed.restart_apiserver(downtime=self.rng.uniform(0.5, 2.0))  # type: ignore[attr-defined]
        resume_at = time.monotonic() + LEASE + self.rng.uniform(0.5, 2.0)
        deadline = time.monotonic() + 90
        while not judge.converged([n["name"] for n in want], config):
            judge.poll(time.monotonic())
            if paused is not None and time.monotonic() >= resume_at:
                assert paused.proc is not None
                paused.proc.send_signal(signal.SIGCONT)
                paused = None
            if time.monotonic() > deadline:
                self.violations.append(f"step after {action} did not converge: {judge.view.clusters_of(judge.ips)}")
                break
            time.sleep(0.1)
        if paused is not None and paused.proc is not None:
            paused.proc.send_signal(signal.SIGCONT)
        for op in self.ops:  # a killed or stopped instance comes back, as its Deployment would bring it
            if not op.alive:
                op.start()
        log = self.view.write_log(ips_of(self.ms))[before:]
        first_new = next((w for w in log if (term_of(w) or -1) > newest), None)
        if first_new is not None and action in ("kill", "term"):
            (self.failover if action == "kill" else self.handover).append(round(first_new["time"] - struck, 2))


def test_leader_election_trials(
    testbed: Cluster,
    kube_api: ApiClient,
    sim: SimulatorProcess,
    view: SimView,
    clusters: Clusters,
    operators: Callable[..., OperatorProcess],
) -> None:
    results = []
    for i in range(LE_TRIALS):
        trial = LeaderTrial(i, random.Random(SEED * 7919 + i), testbed, kube_api, sim, view, clusters, operators)
        trial.run()
        for op in trial.ops:
            op.kill()
        print(f"le trial {i}: actions={trial.actions} failover={trial.failover} handover={trial.handover} "
              f"violations={trial.violations}", flush=True)  # fmt: skip
        results.append(trial)
    for key, attr in (("failover", "failover"), ("handover", "handover")):
        FIGURES[key].extend(v for t in results for v in getattr(t, attr))
    summary = {
        "trials": len(results),
        "kills": sum(t.actions.count("kill") for t in results),
        "pauses": sum(t.actions.count("pause") for t in results),
        "terms": sum(t.actions.count("term") for t in results),
        "apiserver_restarts": sum(t.actions.count("apiserver") for t in results),
        "violations": sum(len(t.violations) for t in results),
        **{
            f"{k}_seconds": {"median": statistics.median(v), "max": max(v), "n": len(v)} if v else None
            for k, v in FIGURES.items()
        },
    }
    print("leader-election summary: " + json.dumps(summary), flush=True)
    bad = [f"trial {t.index}: {t.violations}" for t in results if t.violations]
    assert not bad, "\n".join(bad)
