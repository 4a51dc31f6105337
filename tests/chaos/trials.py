"""Randomized crash trials: one ManagerCluster of 3 to 5 nodes is created, scaled up, scaled
down (the master included, half the time) and reconfigured while its operator is SIGKILLed at
random points, most often by the operator's own failpoints exactly around a manager write
(`before-write`: intent recorded, request not sent; `after-write`: the manager answered, the
outcome not recorded). A killed operator is restarted after a random pause.

Everything random comes from `random.Random(trial_seed(seed, index))`, so CHAOS_SEED replays the
same plan (sizes, steps, kill points and pauses); thread timing is not replayed.
Each trial is judged from the simulator's side only (see support.Judge).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster
from clusterop_dev.testbed import Cluster

from .support import KEY, PASSWORD, Judge, SimView, find_secrets, kube_texts

CONVERGE_BOUND = 60.0  # seconds a step may take to converge once failpoints are off
KILLS_PER_STEP = 3  # after this many kills in a step the operator restarts without failpoints


def trial_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + index


@dataclass
class TrialResult:
    index: int
    seed: int
    nodes: int = 0
    steps: list[str] = field(default_factory=list)
    kills_before_write: int = 0
    kills_after_write: int = 0
    kills_random: int = 0
    converge_seconds: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    @property
    def kills(self) -> int:
        return self.kills_before_write + self.kills_after_write + self.kills_random


class Trial:
    def __init__(
        self,
        index: int,
        seed: int,
        testbed: Cluster,
        sim: SimulatorProcess,
        view: SimView,
        workdir: Path,
    ) -> None:
        self.result = TrialResult(index=index, seed=trial_seed(seed, index))
        self.rng = random.Random(self.result.seed)
        self.testbed, self.sim, self.view = testbed, sim, view
        self.workdir = workdir
        self.namespace = f"chaos-{seed % 100000}-{index}"
        self.op: OperatorProcess | None = None
        self.we_killed = False
        self.kills_this_step = 0
        self.next_random_kill: float | None = None
        self.log_offset = 0

    # -- the operator, supervised ----------------------------------------------------------------

    def _failpoints(self) -> str:
        before = round(self.rng.uniform(0.25, 0.6), 2)
        after = round(self.rng.uniform(0.25, 0.6), 2)
        return f"before-write=kill@{before},after-write=kill@{after}"

    def _start(self) -> None:
        assert self.op is not None
        chaos = self.kills_this_step < KILLS_PER_STEP
        if chaos:
            self.op.env["CLUSTEROP_FAILPOINTS"] = self._failpoints()
        else:
            self.op.env.pop("CLUSTEROP_FAILPOINTS", None)
        self.we_killed = False
        self.op.start()

    def _supervise(self) -> None:
        """Kill at the scheduled random time; restart a dead operator after a random pause."""
        assert self.op is not None
        now = time.monotonic()
        if self.op.alive and self.next_random_kill is not None and now >= self.next_random_kill:
            self.next_random_kill = None
            if self.kills_this_step < KILLS_PER_STEP:
                self.we_killed = True
                self.op.kill()
        if self.op.alive:
            return
        text = self.op.log_text()
        tail, self.log_offset = text[self.log_offset :], len(text)
        if self.we_killed:
            self.result.kills_random += 1
        elif "FAILPOINT fired point=before-write" in tail:
            self.result.kills_before_write += 1
        elif "FAILPOINT fired point=after-write" in tail:
            self.result.kills_after_write += 1
        else:
            rc = self.op.proc.returncode if self.op.proc else None
            self.result.violations.append(f"the operator exited by itself (rc={rc})")
        self.kills_this_step += 1
        time.sleep(self.rng.uniform(0.0, 0.5))
        self._start()

    # -- one trial -------------------------------------------------------------------------------

    def run(self, api: ApiClient) -> TrialResult:
        began = time.monotonic()
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace)))
        try:
            self._run(api)
        except Exception as e:  # a harness error is reported with the trial's seed, not swallowed
            self.result.error = f"{type(e).__name__}: {e}"
        finally:
            judge = getattr(self, "judge", None)
            if judge is not None:
                self.result.violations.extend(judge.violations)
            if self.op is not None:
                try:
                    texts = kube_texts(api, self.namespace)
                    texts[f"log {self.op.log_path.name}"] = self.op.log_text()
                    self.result.leaks = find_secrets(texts)
                finally:
                    self.op.stop()
            try:
                core.delete_namespace(self.namespace, propagation_policy="Background")
            except client.exceptions.ApiException:
                pass
            self.result.seconds = round(time.monotonic() - began, 1)
        return self.result

    def _run(self, api: ApiClient) -> None:
        rng = self.rng
        size = rng.randint(3, 5)
        grow = rng.randint(1, 2)
        machines = self.sim.add_machines(size + grow)
        nodes = [
            {"name": f"t{self.result.index}-m{i + 1}", "hostIP": m["host_ip"], "endpoint": m["endpoint"]}
            for i, m in enumerate(machines)
        ]
        self.result.nodes = size
        judge = Judge(self.view, machines, {n["hostIP"]: n["name"] for n in nodes})
        self.judge = judge
        clusters = Clusters(api, self.namespace)
        clusters.put_credentials(password=PASSWORD)
        clusters.put_key(key=KEY)
        self.op = OperatorProcess(
            self.testbed.kubeconfig,
            [self.namespace],
            resync_seconds=2.0,
            log_path=self.workdir / f"{self.namespace}.log",
        )
        self._start()
        want = nodes[:size]
        config: dict[str, Any] = {"trial": self.result.index, "generation": 1}
        name = "c"

        def step(label: str, change: Callable[[], None]) -> None:
            self.result.steps.append(label)
            self.kills_this_step = 0
            self.next_random_kill = time.monotonic() + rng.uniform(0.0, 3.0) if rng.random() < 0.4 else None
            change()
            started = time.monotonic()
            self._converge([n["name"] for n in want], config, started, label)

        step(f"create {size}", lambda: clusters.create(manager_cluster(name, want, config=config)))
        # Scale up by one or two fresh machines.
        want = nodes[: size + grow]
        step(f"scale up to {len(want)}", lambda: clusters.set_nodes(name, want))
        # Scale down by one or two, the master among them half the time; a dropped node is
        # never wanted again (a removed manager can never rejoin).
        master = self._master_name()
        drop_count = rng.randint(1, 2)
        candidates = [n for n in want if n["name"] != master]
        drops = rng.sample(candidates, drop_count)
        if master is not None and rng.random() < 0.5:
            drops[0] = next(n for n in want if n["name"] == master)
        keep = [n for n in want if n not in drops]
        with_config = rng.random() < 0.3
        labels = ",".join(sorted(d["name"].split("-")[-1] + ("*" if d["name"] == master else "") for d in drops))

        def scale_down() -> None:
            now = time.monotonic()
            for d in drops:
                judge.spec_drops[d["name"]] = now
            if with_config:
                config["generation"] = 2
                clusters.patch(name, {"spec": {"nodes": keep, "config": dict(config)}})
            else:
                clusters.set_nodes(name, keep)

        want = keep
        step(f"scale down -{labels}" + (" +config" if with_config else ""), scale_down)
        config["generation"] = 3
        config["nested"] = {"seed": self.result.seed % 1000}
        step("reconfigure", lambda: clusters.patch(name, {"spec": {"config": dict(config)}}))
        stray = judge.stray([n["name"] for n in want])
        if stray:
            judge.violations.append(f"left half-joined or joined to nothing: {stray}")

    def _master_name(self) -> str | None:
        found = self.judge.view.clusters_of(self.judge.ips)
        return str(found[0]["master"]) if len(found) == 1 and found[0]["master"] else None

    def _converge(self, want: list[str], config: dict[str, Any], started: float, label: str) -> None:
        """Poll the simulator (judging every poll) until it shows the spec; bound once kills stop."""
        calm_since: float | None = None
        while True:
            now = time.monotonic()
            self.judge.poll(now)
            self._supervise()
            if self.judge.converged(want, config):
                self.result.converge_seconds.append(round(time.monotonic() - started, 2))
                return
            chaos_over = self.kills_this_step >= KILLS_PER_STEP or (
                self.next_random_kill is None and now - started > 20
            )
            if chaos_over and calm_since is None:
                calm_since = now
            if calm_since is not None and now - calm_since > CONVERGE_BOUND:
                self.judge.violations.append(
                    f"step {label!r} did not converge within {CONVERGE_BOUND}s of the last kill; "
                    f"simulator: {self.judge.view.clusters_of(self.judge.ips)}"
                )
                raise TimeoutError(f"trial {self.result.index} step {label!r} did not converge")
            time.sleep(0.1)
