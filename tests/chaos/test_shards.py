"""Issue 17 (4): sharding. Operator processes with `--shards N` against the real apiserver and
the simulator over HTTP, judged from the managers' write log (each write names its sender, its
term and its shard in the User-Agent):

* 2 shards, 3 replicas: each object's writes come from the holder of its shard, both holders
  work, the third is a spare;
* the holder of a shard is SIGKILLed: the spare takes that shard over and its objects converge;
* a rolling change to 3 shards (3 new replicas started beside the old ones, spec changes made,
  then the old ones stopped): no object is ever written by two replicas in turn (once a new
  replica wrote to a cluster, nobody else does), and everything converges under the new count.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client import ApiClient

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop.shards import lease_name, shard_of
from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster, node_specs
from clusterop_dev.testkit import free_ports, wait_for

from .support import AGENT, SimView
from .test_leader_election import le_args

pytestmark = pytest.mark.chaos


STALL = 4.0


def shard_args(namespace: str, count: int, liveness: int | None = None) -> list[str]:
    args = [*le_args(namespace), "--shards", str(count)]
    if liveness is not None:
        args += ["--liveness", f"http://127.0.0.1:{liveness}/healthz", "--stall-seconds", str(STALL)]
    return args


def healthy(port: int) -> int:
    return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code


def holders(api: ApiClient, namespace: str, count: int) -> dict[int, str]:
    out = {}
    for i in range(count):
        try:
            lease = client.CoordinationV1Api(api).read_namespaced_lease(
                lease_name("cloudify-cluster-operator", i, count), namespace
            )
        except client.exceptions.ApiException:
            continue
        if lease.spec.holder_identity:
            out[i] = str(lease.spec.holder_identity)
    return out


def process_of(ops: list[OperatorProcess], identity: str) -> OperatorProcess | None:
    return next((op for op in ops if op.alive and op.proc is not None and f"_{op.proc.pid}_" in identity), None)


def names_for(namespace: str, counts: tuple[int, ...]) -> list[str]:
    """A few ManagerCluster names that cover every shard of every count."""
    names: list[str] = []
    uncovered = {(c, i) for c in counts for i in range(c)}
    for k in range(1000):
        name = f"sh{k}"
        covers = {(c, shard_of(namespace, name, c)) for c in counts}
        if covers & uncovered:
            names.append(name)
            uncovered -= covers
        if not uncovered:
            return names
    raise AssertionError("no spread found")


def writers(view: SimView, ms: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(identity, shard) of each write to these machines, in arrival order."""
    out = []
    for w in view.write_log(m["host_ip"] for m in ms):
        m = AGENT.search(str(w.get("agent") or ""))
        assert m is not None and m.group("term") is not None, f"a write from a non-holder: {w}"
        out.append((m.group("identity"), m.group("shard") or ""))
    return out


def interleaved(sequence: list[str]) -> bool:
    """True when a sender wrote again after another one had taken over (A, B, A)."""
    done: set[str] = set()
    for prev, cur in itertools.pairwise(sequence):
        if cur != prev:
            if cur in done:
                return True
            done.add(prev)
    return False


def test_shards_spare_takeover_and_a_rolling_change_of_the_count(
    kube_api: ApiClient,
    sim: SimulatorProcess,
    view: SimView,
    clusters: Clusters,
    operators: Callable[..., OperatorProcess],
) -> None:
    ns = clusters.ns
    names = names_for(ns, (2, 3))
    machines = {n: sim.add_machines(3) for n in names}
    ports = free_ports(3)
    old = [operators(extra_args=shard_args(ns, 2, liveness=p)) for p in ports]
    wait_for(lambda: len(holders(kube_api, ns, 2)) == 2, timeout=30, message="both shards held")
    for n in names:
        clusters.create(manager_cluster(n, node_specs(machines[n][:2], prefix=n)))
    for n in names:
        clusters.wait_ready(n, timeout=60)
    held = holders(kube_api, ns, 2)
    for n in names:  # each object written by the holder of its shard, and only by it
        who = {identity for identity, _ in writers(view, machines[n])}
        assert who == {held[shard_of(ns, n, 2)]}, (n, who, held)
    spare = [op for op in old if not any(process_of([op], h) for h in held.values())]
    assert len(spare) == 1, "the third replica holds nothing"
    # Liveness: a loop waiting for its object's shard is not a stalled one.
    time.sleep(STALL + 2)
    assert [healthy(p) for p in ports] == [200, 200, 200]

    # The holder of shard 0 dies: the spare takes its shard over; its objects scale up.
    victim = process_of(old, held[0])
    assert victim is not None
    victim.kill()
    on_zero = [n for n in names if shard_of(ns, n, 2) == 0]
    for n in on_zero:
        clusters.set_nodes(n, node_specs(machines[n], prefix=n))
    wait_for(
        lambda: holders(kube_api, ns, 2).get(0) not in (None, held[0]), timeout=30, message="a new holder of shard 0"
    )
    assert process_of(spare, holders(kube_api, ns, 2)[0]) is not None, "the spare took shard 0"
    for n in on_zero:
        wait_for(lambda n=n: len(live(view, machines[n])) == 3, timeout=60, message=f"{n} scaled up by the spare")

    # A rolling change to 3 shards: the new replicas start beside the old ones, every object
    # changes, then the old ones stop one by one (SIGTERM: each releases its Lease).
    for _ in range(3):
        operators(extra_args=shard_args(ns, 3))
    wait_for(lambda: len(holders(kube_api, ns, 3)) == 3, timeout=30, message="the three new shards held")
    time.sleep(4 * 0.5)  # every old replica has listed since: each object is covered twice, so waits
    for n in names:
        clusters.patch(n, {"spec": {"config": {"generation": 2}}})
    time.sleep(3)
    for op in old:
        if op.alive:
            op.stop(timeout=15)
    for n in names:
        wait_for(lambda n=n: configured(view, machines[n], 2), timeout=60, message=f"{n}'s config under 3 shards")
        clusters.wait_ready(n, timeout=60)
    for n in on_zero:
        if len(live(view, machines[n])) != 3:
            pytest.fail(f"{n} lost a node")
    new_ids = {h for h in holders(kube_api, ns, 3).values()}
    for n in names:
        seq = [identity for identity, _ in writers(view, machines[n])]
        assert not interleaved(seq), (n, seq)
        assert seq[-1] in new_ids, (n, seq)  # the config PATCH of generation 2 came from the new count
        shards = {s for identity, s in writers(view, machines[n]) if identity in new_ids}
        assert shards == {f"shard {shard_of(ns, n, 3)} of 3"}, (n, shards)


def live(view: SimView, ms: list[dict[str, Any]]) -> set[str]:
    found = view.clusters_of(m["host_ip"] for m in ms)
    assert len(found) == 1 and found[0]["bootstraps"] == 1, found
    return {m["name"] for m in found[0]["members"] if not m["removed"] and m["online"] and m["initialized"]}


def configured(view: SimView, ms: list[dict[str, Any]], generation: int) -> bool:
    found = view.clusters_of(m["host_ip"] for m in ms)
    return len(found) == 1 and (found[0].get("settings") or {}).get("generation") == generation
