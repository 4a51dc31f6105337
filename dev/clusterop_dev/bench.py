"""The benchmark of issue 7: `make bench` / `python -m clusterop_dev.bench`.

Starts the local control plane (with an audit log of writes), one simulator process and the
operator as a separate process under its own ServiceAccount (so the audit log tells its writes
from the benchmark's), then measures:

a. bootstrap latency of a 3-node ManagerCluster (apply -> Ready and observedGeneration current),
   with the simulator's delays at 0 and at 0.3 s, beside hack/cli40.py (the 4.0 CLI procedure);
b. scale: N clusters applied at once (server-side apply from threads) until all are Ready: wall
   time, the operator's peak RSS (VmHWM) and CPU seconds (a fresh operator process per N);
c. steady state for two resync intervals: the operator's apiserver writes (audit log), manager
   writes and GETs (the simulator's request log) and its CPU share;
d. (b) and (c) at each N, as a table, JSON and a PNG.

Results go to bench-results/ (JSON, PNG, operator logs). Speed is reported here, never
asserted: tests/bench runs a small version of this to keep it from rotting.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import urllib3
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from clusterop_dev.benchkit.audit import AuditLog
from clusterop_dev.benchkit.procfs import (
    has_module,
    passes,
    proc_cpu_seconds,
    proc_status_kib,
    raise_fd_limit,
    scrape,
)
from clusterop_dev.benchkit.profile import summarise
from clusterop_dev.benchkit.proxy import CountingProxy
from clusterop_dev.benchkit.readywatch import ReadyWatch
from clusterop_dev.benchkit.report import plot, render_table, spread, targets
from clusterop_dev.benchkit.simfleet import SimFleet
from clusterop_dev.harness import GROUP, PLURAL, REPO, VERSION, OperatorProcess, apply_crd, manager_cluster, node_specs
from clusterop_dev.testbed import DEFAULT_AUDIT_RESOURCES, TestBed
from clusterop_dev.testkit import free_ports

__all__ = ["Config", "main", "render_table", "run"]

OPERATOR_NS = "clusterop-system"
OPERATOR_SA = "cloudify-cluster-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
FIELD_MANAGER = "clusterop-bench"
CLI40 = REPO / "hack" / "cli40.py"
FLOOR = REPO / "hack" / "floor_operator.py"


@dataclass
class Config:
    levels: tuple[int, ...] = (10, 100, 1000)
    runs: int = 5
    resync_seconds: float = 30.0
    workers: int | None = None  # None: the operator's default
    delay: float = 0.3
    cli_poll: float = 3.0
    apply_threads: int = 16
    ready_timeout: float = 300.0
    steady_intervals: float = 2.0
    out: Path = REPO / "bench-results"
    profile: bool = False  # py-spy record the operator at the largest level
    plot: bool = True
    operator_args: tuple[str, ...] = ()
    operator_env: tuple[tuple[str, str], ...] = ()
    #: the operator's interpreter: `make bench` passes a venv with the runtime dependencies only,
    #: as in the image (the dev venv also holds the `kubernetes` client, which kopf imports: ~11 MiB)
    operator_python: str = sys.executable
    #: a stage of this many seconds, its manager requests counted (0 skips it)
    long_stage: float = 60.0
    #: the `operator/` folder of another checkout: its latency is measured too, in the same run
    baseline_src: Path | None = None
    #: each level is formed again by hack/floor_operator.py (the least a kopf operator does), right
    #: after this operator's run of it: what kopf and the machine cost, in the same run
    floor: bool = False
    quiet_seconds: float = 5.0  # the steady window starts after this long without an operator write
    #: operator processes at each level (b)-(d); above 1 each runs with `--shards` this many
    shards: int = 1
    simulators: int = 1  # simulator processes, one loopback address each (benchkit.simfleet)
    machine_batch: int = 249  # machines per control call: whole clusters (a multiple of 3)


# -- the bench --------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Fleet:
    """The operator processes of one level: CPU and passes summed, RSS per process."""

    ops: list[OperatorProcess]

    @property
    def pids(self) -> list[int]:
        return [op.proc.pid for op in self.ops if op.proc is not None]

    def cpu_each(self) -> list[float]:
        return [proc_cpu_seconds(pid) for pid in self.pids]

    def cpu_seconds(self) -> float:
        return sum(self.cpu_each())

    def rss_each(self, field: str) -> list[float]:
        return [round(proc_status_kib(pid, field) / 1024, 1) for pid in self.pids]

    def rss_mib(self, field: str) -> float:
        return max(self.rss_each(field))

    @property
    def urls(self) -> list[str]:
        return [str(op.metrics_url) for op in self.ops]  # type: ignore[attr-defined]

    def scrape(self, prefix: str) -> float:
        return sum((scrape(url, prefix) for url in self.urls), 0.0)

    def passes_each(self) -> list[int]:
        return [passes(url) for url in self.urls]

    def passes(self) -> int:
        return sum(self.passes_each())


class FloorProcess(OperatorProcess):
    """hack/floor_operator.py in place of the operator (it takes the metrics arguments only)."""

    def command(self) -> list[str]:
        return [self.python, str(FLOOR), *self.extra_args]


@dataclass
class Bench:
    config: Config
    bed: TestBed
    sim: SimFleet
    api: ApiClient
    operator_kubeconfig: Path
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    # objects
    def namespace(self, name: str) -> str:
        with suppress(ApiException):
            self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        return name

    def secret(self, ns: str, name: str, data: dict[str, str]) -> None:
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name),
            data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        )
        try:
            self.core.create_namespaced_secret(ns, body)
        except ApiException as e:
            if e.status != 409:
                raise
            self.core.replace_namespaced_secret(name, ns, body)

    def apply(self, ns: str, body: dict[str, Any]) -> None:
        """Server-side apply, as `kubectl apply --server-side` does it."""
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, body["metadata"]["name"], body,
            field_manager=FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml",
        )  # fmt: skip

    def in_parallel(self, fn: Callable[[Any], None], items: Sequence[Any]) -> None:
        with ThreadPoolExecutor(self.config.apply_threads, thread_name_prefix="apply") as pool:
            for _ in pool.map(fn, items):
                pass

    def delete_all(self, ns: str, timeout: float = 300.0) -> None:
        """Delete the namespace's ManagerClusters (Orphan) while the operator runs, so it lets go.
        A collection of 3,000 outlasts the apiserver's request timeout (504), and the apiserver
        stops deleting with it; at 10,000 it closed the connection without an answer. Either
        way the call is made again until none is left undeleted."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
            except (ApiException, urllib3.exceptions.HTTPError) as e:
                if isinstance(e, ApiException) and e.status != 504:
                    raise
                why = "timed out (504)" if isinstance(e, ApiException) else f"dropped the request ({type(e).__name__})"
                say(f"deleting the ManagerClusters of {ns}: the apiserver {why}; deleting the rest")
                if time.monotonic() < deadline:
                    continue
            break
        while cast(dict[str, Any], self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, limit=1))[
            "items"
        ]:
            if time.monotonic() > deadline:
                say(f"ManagerClusters of {ns} still there after {timeout}s; going on")
                return
            time.sleep(0.5)

    def cluster_body(self, name: str, machines: Sequence[dict[str, Any]], key_secret: str) -> dict[str, Any]:
        return manager_cluster(name, node_specs(machines), key_secret=key_secret)

    @contextmanager
    def operator(self, tag: str, src: Path | None = None) -> Iterator[OperatorProcess]:
        """A fresh operator process; `src`: the `operator/` folder of another checkout to run instead."""
        with self.fleet(tag, 1, src) as ops:
            yield ops.ops[0]

    @contextmanager
    def fleet(self, tag: str, shards: int, src: Path | None = None, floor: bool = False) -> Iterator[Fleet]:
        """`shards` operator processes (one, without --shards, when 1), each with its metrics port;
        `floor`: one hack/floor_operator.py instead."""
        ops: list[OperatorProcess] = []
        try:
            for i, port in enumerate(free_ports(shards)):  # distinct: free_port twice may repeat
                extra = [] if shards == 1 else ["--shards", str(shards), "--leader-elect-lease-namespace", OPERATOR_NS]
                ops.append(self._start_operator(tag if shards == 1 else f"{tag}-{i}", src, extra, port, floor))
            yield Fleet(ops)
        finally:
            for op in ops:
                op.stop(timeout=20)

    def _start_operator(
        self, tag: str, src: Path | None, extra: list[str], port: int, floor: bool = False
    ) -> OperatorProcess:
        args = ["--metrics-port", str(port), "--metrics-addr", "127.0.0.1", *self.config.operator_args, *extra]
        if self.config.workers is not None:
            args += ["--workers", str(self.config.workers)]
        env = dict(self.config.operator_env)
        if src is not None:
            env["PYTHONPATH"] = str(src)  # ahead of the runtime venv's (editable) install of this tree
        op = (FloorProcess if floor else OperatorProcess)(
            self.operator_kubeconfig,
            resync_seconds=self.config.resync_seconds,
            log_path=self.config.out / f"operator-{tag}.log",
            log_level="info",
            extra_args=args,
            env=env,
            python=self.config.operator_python,
        )
        self.config.out.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            op.log_path.unlink()
        op.start()
        op.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
        return op

    def wait_operator_up(self, op: OperatorProcess, ns: str) -> None:
        """A canary in its own namespace: the operator watches and reconciles once it is Ready."""
        canary_ns = self.namespace(f"{ns}-canary")
        self.secret(canary_ns, "manager-admin", {"username": "admin", "password": "admin"})
        self.secret(canary_ns, "cluster-key", {"encryptionKey": new_key()})
        machines = self.sim.add_machines(1)
        w = ReadyWatch(self.api, canary_ns)
        try:
            self.apply(canary_ns, self.cluster_body("canary", machines, "cluster-key"))
            if not w.wait(["canary"], 120):
                raise RuntimeError(f"the operator did not make a canary Ready; see {op.log_path}")
        finally:
            w.close()
        self.delete_all(canary_ns)

    # -- a. latency -----------------------------------------------------------------------------

    def machines(self, n: int, proxy: CountingProxy | None) -> list[dict[str, Any]]:
        """New simulated machines; with `proxy`, their endpoints are the proxy's."""
        machines = self.sim.add_machines(n)
        if proxy is None:
            return machines
        return [{**m, "endpoint": proxy.expose(m["endpoint"])} for m in machines]

    def one_bootstrap(self, ns: str, name: str, w: ReadyWatch, proxy: CountingProxy | None = None) -> float:
        body = self.cluster_body(name, self.machines(3, proxy), "cluster-key")
        started = time.monotonic()
        self.apply(ns, body)
        if not w.wait([name], 300):
            raise RuntimeError(f"{ns}/{name} did not become Ready within 300s")
        return w.ready_at[name] - started

    def one_cli(self, key: str, proxy: CountingProxy | None = None) -> float:
        argv = [sys.executable, str(CLI40), "--key", key, "--poll", str(self.config.cli_poll)]
        for i, m in enumerate(self.machines(3, proxy)):
            argv += ["--node", f"manager-{i + 1}={m['host_ip']}={m['endpoint']}"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        if done.returncode != 0:
            raise RuntimeError(f"cli40 failed: {answer}")
        return float(answer["seconds"])

    def latency(self, tag: str = "latency", src: Path | None = None) -> dict[str, Any]:
        """Bootstraps of 3-node clusters, each case run directly and through the counting proxy
        (runs interleaved, so the machine's load falls on both alike), beside the CLI procedure;
        then one cluster whose first stage lasts `long_stage` seconds, its manager requests counted."""
        cfg = self.config
        ns = self.namespace(f"bench-{tag}")
        self.secret(ns, "manager-admin", {"username": "admin", "password": "admin"})
        key = new_key()
        self.secret(ns, "cluster-key", {"encryptionKey": key})
        load0 = os.getloadavg()
        runs: dict[str, list[float]] = {k: [] for k in ("zero", "zero_proxy", "op", "op_proxy", "cli", "cli_proxy")}
        out: dict[str, Any] = {}
        with self.operator(tag, src) as op, CountingProxy() as proxy:
            self.sim.set_delays(start_delay=0, join_delay=0)
            self.wait_operator_up(op, ns)
            w = ReadyWatch(self.api, ns)
            try:
                say(f"{tag}: {cfg.runs} bootstraps with the simulator's delays at 0 (direct, proxied)")
                for i in range(cfg.runs):
                    runs["zero"].append(self.one_bootstrap(ns, f"zero-{i}", w))
                    runs["zero_proxy"].append(self.one_bootstrap(ns, f"zero-proxy-{i}", w, proxy))
                self.sim.set_delays(start_delay=cfg.delay, join_delay=cfg.delay)
                say(f"{tag}: {cfg.runs} bootstraps and CLI procedures with delays {cfg.delay}s (direct, proxied)")
                for i in range(cfg.runs):
                    runs["op"].append(self.one_bootstrap(ns, f"delayed-{i}", w))
                    runs["op_proxy"].append(self.one_bootstrap(ns, f"delayed-proxy-{i}", w, proxy))
                    runs["cli"].append(self.one_cli(key))
                    runs["cli_proxy"].append(self.one_cli(key, proxy))
                if cfg.long_stage > 0:
                    out["long_stage"] = self.long_stage(ns, w, proxy)
            finally:
                w.close()
                self.sim.set_delays(start_delay=0, join_delay=0)
            self.delete_all(ns)
        out["load"] = {"start": load0, "end": os.getloadavg()}
        out["zero_delay"] = spread(runs["zero"])
        out["delays"] = {"start_delay": cfg.delay, "join_delay": cfg.delay, "cli_poll": cfg.cli_poll}
        out["operator"] = spread(runs["op"])
        out["cli40"] = spread(runs["cli"])
        out["ratio"] = round(out["cli40"]["median"] / out["operator"]["median"], 2)
        out["proxied"] = {
            "zero_delay": spread(runs["zero_proxy"]),
            "operator": spread(runs["op_proxy"]),
            "cli40": spread(runs["cli_proxy"]),
        }
        out["proxied"]["ratio"] = round(out["proxied"]["cli40"]["median"] / out["proxied"]["operator"]["median"], 2)
        return out

    def long_stage(self, ns: str, w: ReadyWatch, proxy: CountingProxy) -> dict[str, Any]:
        """A 3-node cluster whose first node takes `long_stage` seconds to start (joins 0.3 s):
        the manager requests of its formation, through the proxy."""
        cfg = self.config
        say(f"long stage: a cluster whose first node starts in {cfg.long_stage:g}s")
        self.sim.set_delays(start_delay=cfg.long_stage, join_delay=cfg.delay)
        proxy.reset()
        seconds = self.one_bootstrap(ns, "long-stage", w, proxy)
        by_path = dict(proxy.counts)
        return {
            "start_delay": cfg.long_stage,
            "join_delay": cfg.delay,
            "ready_seconds": round(seconds, 2),
            "manager_requests": sum(by_path.values()),
            "manager_requests_by_path": by_path,
        }

    # -- b + c. scale and steady state ----------------------------------------------------------

    def level(self, n: int, floor: bool = False) -> dict[str, Any]:
        """One scale level: form `n` clusters, then (not for the floor) hold them at rest."""
        cfg = self.config
        ns = self.namespace(f"floor-{n}" if floor else f"bench-{n}")
        say(f"scale {n}{' (floor)' if floor else ''}: {3 * n} machines, {n} key Secrets")
        t = time.monotonic()
        machines: list[dict[str, Any]] = []
        while len(machines) < 3 * n:  # in batches: 9,000 (even 1,000) in one control call outlasted its timeout
            # a batch is whole clusters: with several simulators, each batch goes to the next one
            machines += self.sim.add_machines(min(cfg.machine_batch, 3 * n - len(machines)))
        machines_seconds = time.monotonic() - t
        self.secret(ns, "manager-admin", {"username": "admin", "password": "admin"})
        names = [f"mc-{i:04d}" for i in range(n)]
        self.in_parallel(lambda name: self.secret(ns, f"{name}-key", {"encryptionKey": new_key()}), names)
        bodies = [self.cluster_body(name, machines[3 * i : 3 * i + 3], f"{name}-key") for i, name in enumerate(names)]
        audit = AuditLog(self.bed.audit_log, OPERATOR_USER) if self.bed.audit_log else None
        result: dict[str, Any] = {"clusters": n, "machines": 3 * n, "add_machines_seconds": round(machines_seconds, 2)}
        result["machines_by_address"] = dict(Counter(str(urlsplit(m["endpoint"]).hostname) for m in machines))
        load0 = os.getloadavg()
        with self.fleet(f"floor-{n}" if floor else f"scale-{n}", 1 if floor else cfg.shards, floor=floor) as ops:
            if cfg.shards > 1 and not floor:
                self.wait_shards_held(cfg.shards)
            self.wait_operator_up(ops.ops[0], ns)
            w = ReadyWatch(self.api, ns)
            profiler = None if floor else self.start_profiler(ops.pids[0], n)
            try:
                passes0 = ops.passes()
                pass_time0 = ops.scrape("clusterop_reconcile_duration_seconds_sum")
                cpu0 = ops.cpu_seconds()
                others0 = self.others_cpu()
                if audit:
                    audit.mark()
                say(f"scale {n}: applying {n} ManagerClusters from {cfg.apply_threads} threads")
                t0 = time.monotonic()
                self.in_parallel(lambda body: self.apply(ns, body), bodies)
                t_applied = time.monotonic()
                all_ready = w.wait(names, cfg.ready_timeout)
                self.stop_profiler(profiler, n)  # the formation only
                profiler = None
                t_ready = max(w.ready_at.values()) if w.ready_at else time.monotonic()
                cpu1 = ops.cpu_seconds()
                others1 = self.others_cpu()
                passes1 = ops.passes()
                pass_time1 = ops.scrape("clusterop_reconcile_duration_seconds_sum")
                result.update(
                    forming_pass_seconds_mean=round((pass_time1 - pass_time0) / max(passes1 - passes0, 1), 3),
                    forming_passes_per_cluster=round((passes1 - passes0) / n, 1),
                    apply_seconds=round(t_applied - t0, 2),
                    all_ready=all_ready,
                    ready_count=sum(1 for nm in names if nm in w.ready_at),
                    ready_after_apply_seconds=round(t_ready - t_applied, 2),
                    wall_seconds=round(t_ready - t0, 2),
                    forming_cpu_seconds=round(cpu1 - cpu0, 2),
                    # where the machine's CPU went while they formed: the operator is one of these
                    forming_cpu_seconds_by_process={
                        "operator": round(cpu1 - cpu0, 2),
                        **{k: round(others1[k] - others0.get(k, 0.0), 2) for k in others1},
                    },
                    forming_apiserver_writes=dict(audit.writes()) if audit else None,
                    rss_peak_mib=ops.rss_mib("VmHWM"),
                )
                say(
                    f"scale {n}: {result['ready_count']}/{n} Ready {result['ready_after_apply_seconds']}s after "
                    f"the apply ({result['apply_seconds']}s); peak RSS {result['rss_peak_mib']} MiB"
                )
                if not floor:  # the floor has no resync: nothing to hold at rest
                    result["steady"] = self.steady(ops, n, audit)
                result["rss_peak_mib"] = ops.rss_mib("VmHWM")
                result["rss_end_mib"] = ops.rss_mib("VmRSS")
                result["cpu_seconds_total"] = round(ops.cpu_seconds(), 2)
                if cfg.shards > 1:  # the figures above are the largest process's RSS and the sums
                    result["shards"] = cfg.shards
                    result["rss_peak_mib_each"] = ops.rss_each("VmHWM")
                    result["rss_end_mib_each"] = ops.rss_each("VmRSS")
                result["load"] = {"start": load0, "end": os.getloadavg()}
                # before the deletion, which takes minutes at 10,000: the level's figures are kept
                (cfg.out / f"{'floor' if floor else 'level'}-{n}.json").write_text(json.dumps(result, indent=2) + "\n")
            finally:
                self.stop_profiler(profiler, n)
                w.close()
            say(f"scale {n}: deleting the ManagerClusters")
            self.delete_all(ns)
        return result

    def others_cpu(self) -> dict[str, float]:
        """CPU seconds so far of everything beside the operator: the control plane's processes,
        the simulators, and this process (its apply threads and the Ready watch)."""
        found = {name: proc_cpu_seconds(pid) for name, pid in self.bed.pids.items()}
        found["simulator"] = sum(proc_cpu_seconds(pid) for pid in self.sim.pids)
        mine = os.times()
        found["bench"] = mine.user + mine.system
        return found

    def steady(self, ops: Fleet, n: int, audit: AuditLog | None) -> dict[str, Any]:
        cfg = self.config
        window = cfg.steady_intervals * cfg.resync_seconds
        quiet_after = 0.0
        if audit:  # formation's last writes (kopf posts events from a queue) are not the steady state
            t = time.monotonic()
            audit.mark()
            while time.monotonic() - t < 2 * window:
                time.sleep(cfg.quiet_seconds)
                if not without_leases(audit.writes()):
                    break
                audit.mark()
            quiet_after = time.monotonic() - t
        say(f"steady {n}: watching for {window:.0f}s ({cfg.steady_intervals:g} resync intervals)")
        self.sim.reset_requests()
        if audit:
            audit.mark()
        profiler = self.start_profiler(ops.pids[0], f"{n}-steady")  # --profile: the window too
        passes0, each0, t0 = ops.passes_each(), ops.cpu_each(), time.monotonic()
        time.sleep(window)
        each1, t1 = ops.cpu_each(), time.monotonic()
        self.stop_profiler(profiler, f"{n}-steady")
        cpu0, cpu1 = sum(each0), sum(each1)
        passes_each = [b - a for a, b in zip(passes0, ops.passes_each(), strict=True)]
        done = sum(passes_each)
        log = self.sim.requests_log()
        every_write = audit.writes() if audit else Counter()
        writes = without_leases(every_write)  # the leader election's renewals are counted apart
        gets = sum(c["count"] for c in log["counts"] if c["method"] == "GET")
        manager_writes = sum(c["count"] for c in log["counts"] if c["method"] != "GET")
        per_path: Counter[str] = Counter()
        for c in log["counts"]:
            per_path[f"{c['method']} {c['path']}"] += c["count"]
        resyncs = (t1 - t0) / cfg.resync_seconds
        return {
            "quiet_after_seconds": round(quiet_after, 1),
            "window_seconds": round(t1 - t0, 1),
            "apiserver_writes": sum(writes.values()),
            "apiserver_writes_by_kind": dict(writes),
            "lease_writes": sum(every_write.values()) - sum(writes.values()),
            "manager_writes": manager_writes,
            "manager_gets": gets,
            "manager_requests_by_path": dict(per_path),
            "passes": done,
            "passes_per_cluster_per_resync": round(done / n / resyncs, 3),
            # a steady cluster has one pass per resync: requests per pass is the figure that does not
            # depend on where the window falls in the jittered resync period
            "gets_per_cluster_per_resync": round(gets / max(done, 1), 3),
            "gets_per_cluster_per_resync_by_clock": round(gets / n / resyncs, 3),
            "cpu_seconds": round(cpu1 - cpu0, 2),
            "cpu_share": round((cpu1 - cpu0) / (t1 - t0), 4),
            **(
                {
                    "cpu_share_each": [round((b - a) / (t1 - t0), 4) for a, b in zip(each0, each1, strict=True)],
                    "passes_each": passes_each,
                }
                if len(each0) > 1
                else {}
            ),
        }

    def wait_shards_held(self, shards: int, timeout: float = 60.0) -> None:
        """Every shard Lease held (each process holds one) before the level's apply."""
        coordination = client.CoordinationV1Api(self.api)

        def held() -> int:
            count = 0
            for i in range(shards):
                with suppress(ApiException):
                    name = f"cloudify-cluster-operator-{i}-of-{shards}"
                    spec = coordination.read_namespaced_lease(name, OPERATOR_NS).spec
                    count += bool(spec is not None and spec.holder_identity)
            return count

        deadline = time.monotonic() + timeout
        while held() < shards:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {shards} shard Leases were not all held after {timeout:.0f}s")
            time.sleep(0.2)

    def start_profiler(self, pid: int, n: int | str) -> subprocess.Popen[bytes] | None:
        """py-spy on the operator while N clusters form, and in their steady window (`--profile`,
        files profile-N.txt and profile-N-steady.txt): raw stacks and a summary."""
        if not self.config.profile:
            return None
        pyspy = Path(sys.executable).parent / "py-spy"
        if not pyspy.exists():
            say("no py-spy in the venv (pip install py-spy): not profiling")
            return None
        target = self.config.out / f"profile-{n}.txt"
        say(f"profiling the operator with py-spy into {target}")
        return subprocess.Popen(
            [str(pyspy), "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--output", str(target),
             "--threads", "--gil", "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop_profiler(self, proc: subprocess.Popen[bytes] | None, n: int | str) -> None:
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
            with suppress(subprocess.TimeoutExpired):
                proc.wait(60)
        raw = self.config.out / f"profile-{n}.txt"
        if raw.exists():
            (self.config.out / f"profile-{n}-top.txt").write_text(summarise(raw))


def without_leases(writes: Counter[str]) -> Counter[str]:
    """The audit's writes ("verb resource") but the leader election's Lease updates."""
    return Counter({k: v for k, v in writes.items() if k.split()[-1] != "leases"})


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def setup_operator_identity(bed: TestBed, api: ApiClient, folder: Path) -> Path:
    """A ServiceAccount bound to cluster-admin and a token kubeconfig: the operator's own user."""
    core = client.CoreV1Api(api)
    with suppress(ApiException):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=OPERATOR_NS)))
    with suppress(ApiException):
        account = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=OPERATOR_SA))
        core.create_namespaced_service_account(OPERATOR_NS, account)
    binding = client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name="clusterop-bench-operator"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name=OPERATOR_SA, namespace=OPERATOR_NS)],
    )
    with suppress(ApiException):
        client.RbacAuthorizationV1Api(api).create_cluster_role_binding(binding)
    token = bed.create_token(OPERATOR_NS, OPERATOR_SA, duration=6 * 3600)
    folder.mkdir(parents=True, exist_ok=True)
    return bed.kubeconfig_for_token(token, folder / "operator.kubeconfig")


# -- main -------------------------------------------------------------------------------------------


def run(config: Config, bed: TestBed | None = None) -> dict[str, Any]:
    """The whole benchmark; uses `bed` (it must have an audit log) or starts its own."""
    fds = raise_fd_limit()
    config.out.mkdir(parents=True, exist_ok=True)
    own_bed = bed is None
    if bed is None:
        say("starting the control plane")
        # the Lease too: under --leader-elect its renewals are the steady state's only writes
        bed = TestBed(audit=True, audit_resources={**DEFAULT_AUDIT_RESOURCES, "coordination.k8s.io": ("leases",)})
        bed.start()
    import kopf

    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kopf": getattr(kopf, "__version__", "?"),
            "fd_limit": fds,
        },
        "settings": {
            "resync_seconds": config.resync_seconds,
            "workers": config.workers or "default",
            "steady_intervals": config.steady_intervals,
            "apply_threads": config.apply_threads,
            "levels": list(config.levels),
            "runs": config.runs,
            "operator_args": list(config.operator_args),
            "operator_env": dict(config.operator_env),
            "operator_python": config.operator_python,
            "shards": config.shards,
            "simulators": config.simulators,
            "floor": config.floor,
            "operator_has_kubernetes_client": has_module(config.operator_python, "kubernetes"),
        },
    }
    try:
        with bed.api_client(connection_pool_maxsize=config.apply_threads + 4) as api:
            apply_crd(api)
            kubeconfig = setup_operator_identity(bed, api, config.out)
            t = time.monotonic()
            with SimFleet(config.simulators, machines=0, start_delay=0, join_delay=0, failover_delay=3.0) as sim:
                results["simulator_start_seconds"] = round(time.monotonic() - t, 2)
                bench = Bench(config, bed, sim, api, kubeconfig, results)
                if config.runs > 0:
                    results["latency"] = bench.latency()
                    if config.baseline_src is not None:
                        results["baseline_latency"] = bench.latency("baseline", config.baseline_src)
                results["scale"] = []
                if config.floor:
                    results["floor_scale"] = []
                for n in config.levels:
                    results["scale"].append(bench.level(n))
                    write(results, config)  # keep what is done if a later level fails
                    if config.floor:  # right after: this machine's speed drifts within minutes
                        results["floor_scale"].append(bench.level(n, floor=True))
                        write(results, config)
                results["simulator_rss_mib"] = round(sum(proc_status_kib(p, "VmRSS") for p in sim.pids) / 1024, 1)
        results["targets"] = targets(results)
        write(results, config)
    finally:
        if own_bed:
            bed.stop()
    return results


def write(results: dict[str, Any], config: Config) -> None:
    (config.out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    if config.plot and results.get("scale"):
        plot(results, config.out / "bench.png")


def parse_args(argv: Sequence[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="python -m clusterop_dev.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--levels", default="10,100,1000", help="numbers of ManagerClusters for (b)-(d), comma-separated")
    p.add_argument("--runs", type=int, default=5, help="bootstraps per latency case (0 skips (a))")
    p.add_argument("--resync-seconds", type=float, default=30.0, help="the operator's --resync-seconds")
    p.add_argument("--workers", type=int, default=None, help="the operator's --workers (default: its own default)")
    p.add_argument("--delay", type=float, default=0.3, help="start and join delays of the latency comparison")
    p.add_argument("--cli-poll", type=float, default=3.0)
    p.add_argument("--apply-threads", type=int, default=16)
    p.add_argument("--ready-timeout", type=float, default=300.0)
    p.add_argument("--steady-intervals", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=REPO / "bench-results")
    p.add_argument("--profile", action="store_true", help="py-spy record the operator while each level forms")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--operator-arg", action="append", default=[], help="extra operator flag (repeatable)")
    p.add_argument("--operator-env", action="append", default=[], help="NAME=VALUE for the operator (repeatable)")
    p.add_argument("--operator-python", default=sys.executable, help="the operator's interpreter (default: this one)")
    p.add_argument("--shards", type=int, default=1, help="operator processes per level, each with --shards this many")
    p.add_argument(
        "--simulators",
        type=int,
        default=1,
        help="simulator processes, each on its own loopback address (127.0.0.2, ...): one holds ~9,000 clusters",
    )
    p.add_argument(
        "--long-stage",
        type=float,
        default=60.0,
        help="seconds of the long stage whose manager requests are counted (0 skips)",
    )
    p.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="the operator/ folder of another checkout (git archive REV operator): its latency too",
    )
    p.add_argument(
        "--floor",
        action="store_true",
        help="form each level again with hack/floor_operator.py (the least a kopf operator does), for comparison",
    )
    a = p.parse_args(argv)
    return Config(
        levels=tuple(int(x) for x in a.levels.split(",") if x.strip()),
        runs=a.runs,
        resync_seconds=a.resync_seconds,
        workers=a.workers,
        delay=a.delay,
        cli_poll=a.cli_poll,
        apply_threads=a.apply_threads,
        ready_timeout=a.ready_timeout,
        steady_intervals=a.steady_intervals,
        out=a.out,
        profile=a.profile,
        plot=not a.no_plot,
        operator_args=tuple(a.operator_arg),
        operator_env=tuple((e.split("=", 1)[0], e.split("=", 1)[1]) for e in a.operator_env),
        operator_python=a.operator_python,
        long_stage=a.long_stage,
        baseline_src=a.baseline_src,
        floor=a.floor,
        shards=a.shards,
        simulators=a.simulators,
    )


def stop_on_sigterm() -> None:
    """SIGTERM (`timeout`, `kill`, a CI job cancelled) unwinds like Ctrl-C: every `finally` runs,
    so the operators, simulators and the control plane this run started are stopped with it."""

    def unwind(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    stop_on_sigterm()
    results = run(config)
    print(render_table(results))
    print(f"\nJSON: {config.out / 'bench.json'}" + (f"  plot: {config.out / 'bench.png'}" if config.plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
