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
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from kubernetes import client, watch
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.harness import GROUP, PLURAL, REPO, VERSION, OperatorProcess, apply_crd, manager_cluster, node_specs
from clusterop_dev.testbed import TestBed

OPERATOR_NS = "clusterop-system"
OPERATOR_SA = "cloudify-cluster-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
FIELD_MANAGER = "clusterop-bench"
CLI40 = REPO / "hack" / "cli40.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024

# Targets of issue 7, checked against the figures and printed (never asserted).
TARGET_LATENCY_S = 0.5
TARGET_CLI_RATIO = 7.0
TARGET_READY_S = 60.0
TARGET_RSS_MIB = 160.0
TARGET_GETS_PER_RESYNC = 1.0
TARGET_CPU_SHARE = 0.10


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
    quiet_seconds: float = 5.0  # the steady window starts after this long without an operator write


# -- process figures ------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def has_module(python: str, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", probe], check=False).returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(metrics_url: str, prefix: str) -> float:
    """The sum of the operator's Prometheus samples whose line starts with `prefix`."""
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def passes(metrics_url: str) -> int:
    """Reconcile passes the operator has finished (its Prometheus counter)."""
    return int(scrape(metrics_url, "clusterop_reconcile_total{"))


def raise_fd_limit(wanted: int = 65536) -> int:
    """Thousands of keep-alive connections (simulator, operator, clients) need more than 1024 fds;
    children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def spread(values: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "runs": [round(v, 4) for v in values],
        "median": round(statistics.median(ordered), 4),
        "min": round(ordered[0], 4),
        "max": round(ordered[-1], 4),
        "stdev": round(statistics.stdev(ordered), 4) if len(ordered) > 1 else 0.0,
    }


# -- the apiserver audit log -------------------------------------------------------------------------


class AuditLog:
    """Writes by one user, read from the test bed's audit log from a remembered offset."""

    def __init__(self, path: Path, user: str) -> None:
        self.path = path
        self.user = user
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def writes(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        if not self.path.exists():
            return counts
        with self.path.open("rb") as f:
            f.seek(self.offset)
            for line in f:
                if not line.endswith(b"\n"):
                    break  # half-written entry: ignore it
                entry = json.loads(line)
                if entry.get("stage") != "ResponseComplete" or entry.get("user", {}).get("username") != self.user:
                    continue
                ref = entry.get("objectRef") or {}
                resource_name = ref.get("resource", "?") + ("/" + ref["subresource"] if ref.get("subresource") else "")
                counts[f"{entry.get('verb')} {resource_name}"] += 1
        return counts


# -- Ready, as a watch sees it ----------------------------------------------------------------------


def is_ready(obj: dict[str, Any]) -> bool:
    st = obj.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    return bool(
        ready and ready.get("status") == "True" and st.get("observedGeneration") == obj["metadata"].get("generation")
    )


class ReadyWatch:
    """A watch on the ManagerClusters of one namespace: when each first became Ready."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.ns = namespace
        self.ready_at: dict[str, float] = {}
        self.events = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._relist()
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)
        self._thread.start()

    def _relist(self) -> None:
        listing = cast(dict[str, Any], self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL))
        self._rv = str(listing["metadata"]["resourceVersion"])
        for obj in listing["items"]:
            self._see(obj)

    def _see(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name not in self.ready_at and is_ready(obj):
            with self._cond:
                self.ready_at[name] = time.monotonic()
                self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    self.custom.list_namespaced_custom_object, GROUP, VERSION, self.ns, PLURAL,
                    resource_version=self._rv, timeout_seconds=300, allow_watch_bookmarks=True,
                ):  # fmt: skip
                    obj = event["object"]
                    self._rv = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.events += 1
                        self._see(obj)
                    if self._stop.is_set():
                        return
            except ApiException as e:
                if e.status == 410:  # expired: start over from a fresh list
                    self._relist()
                elif not self._stop.is_set():
                    time.sleep(0.2)
            except Exception:
                if not self._stop.is_set():
                    time.sleep(0.2)

    def wait(self, names: Sequence[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(n in self.ready_at for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 1.0))
        return True

    def close(self) -> None:
        self._stop.set()
        self._watch.stop()  # type: ignore[no-untyped-call]


# -- the bench --------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    config: Config
    bed: TestBed
    sim: SimulatorProcess
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
        """Delete the namespace's ManagerClusters (Orphan) while the operator runs, so it lets go."""
        self.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
        deadline = time.monotonic() + timeout
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
    def operator(self, tag: str) -> Iterator[OperatorProcess]:
        port = free_port()
        args = ["--metrics-port", str(port), "--metrics-addr", "127.0.0.1", *self.config.operator_args]
        if self.config.workers is not None:
            args += ["--workers", str(self.config.workers)]
        op = OperatorProcess(
            self.operator_kubeconfig,
            resync_seconds=self.config.resync_seconds,
            log_path=self.config.out / f"operator-{tag}.log",
            log_level="info",
            extra_args=args,
            env=dict(self.config.operator_env),
            python=self.config.operator_python,
        )
        self.config.out.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            op.log_path.unlink()
        op.start()
        op.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
        try:
            yield op
        finally:
            op.stop(timeout=20)

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

    def one_bootstrap(self, ns: str, name: str, w: ReadyWatch) -> float:
        machines = self.sim.add_machines(3)
        body = self.cluster_body(name, machines, "cluster-key")
        started = time.monotonic()
        self.apply(ns, body)
        if not w.wait([name], 60):
            raise RuntimeError(f"{ns}/{name} did not become Ready within 60s")
        return w.ready_at[name] - started

    def one_cli(self, key: str) -> float:
        machines = self.sim.add_machines(3)
        argv = [sys.executable, str(CLI40), "--key", key, "--poll", str(self.config.cli_poll)]
        for i, m in enumerate(machines):
            argv += ["--node", f"manager-{i + 1}={m['host_ip']}={m['endpoint']}"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        if done.returncode != 0:
            raise RuntimeError(f"cli40 failed: {answer}")
        return float(answer["seconds"])

    def latency(self) -> dict[str, Any]:
        cfg = self.config
        ns = self.namespace("bench-latency")
        self.secret(ns, "manager-admin", {"username": "admin", "password": "admin"})
        key = new_key()
        self.secret(ns, "cluster-key", {"encryptionKey": key})
        out: dict[str, Any] = {}
        with self.operator("latency") as op:
            self.sim.set_delays(start_delay=0, join_delay=0)
            self.wait_operator_up(op, ns)
            w = ReadyWatch(self.api, ns)
            try:
                say(f"latency: {cfg.runs} bootstraps with the simulator's delays at 0")
                zero = [self.one_bootstrap(ns, f"zero-{i}", w) for i in range(cfg.runs)]
                self.sim.set_delays(start_delay=cfg.delay, join_delay=cfg.delay)
                say(f"latency: {cfg.runs} bootstraps and {cfg.runs} CLI procedures with delays {cfg.delay}s")
                delayed, cli = [], []
                for i in range(cfg.runs):
                    delayed.append(self.one_bootstrap(ns, f"delayed-{i}", w))
                    cli.append(self.one_cli(key))
            finally:
                w.close()
                self.sim.set_delays(start_delay=0, join_delay=0)
            self.delete_all(ns)
        out["zero_delay"] = spread(zero)
        out["delays"] = {"start_delay": cfg.delay, "join_delay": cfg.delay, "cli_poll": cfg.cli_poll}
        out["operator"] = spread(delayed)
        out["cli40"] = spread(cli)
        out["ratio"] = round(out["cli40"]["median"] / out["operator"]["median"], 2)
        return out

    # -- b + c. scale and steady state ----------------------------------------------------------

    def level(self, n: int) -> dict[str, Any]:
        cfg = self.config
        ns = self.namespace(f"bench-{n}")
        say(f"scale {n}: {3 * n} machines, {n} key Secrets")
        t = time.monotonic()
        machines = self.sim.add_machines(3 * n)
        machines_seconds = time.monotonic() - t
        self.secret(ns, "manager-admin", {"username": "admin", "password": "admin"})
        names = [f"mc-{i:04d}" for i in range(n)]
        self.in_parallel(lambda name: self.secret(ns, f"{name}-key", {"encryptionKey": new_key()}), names)
        bodies = [self.cluster_body(name, machines[3 * i : 3 * i + 3], f"{name}-key") for i, name in enumerate(names)]
        audit = AuditLog(self.bed.audit_log, OPERATOR_USER) if self.bed.audit_log else None
        result: dict[str, Any] = {"clusters": n, "machines": 3 * n, "add_machines_seconds": round(machines_seconds, 2)}
        with self.operator(f"scale-{n}") as op:
            assert op.proc is not None
            pid = op.proc.pid
            self.wait_operator_up(op, ns)
            w = ReadyWatch(self.api, ns)
            profiler = self.start_profiler(pid, n)
            metrics_url: str = op.metrics_url  # type: ignore[attr-defined]
            try:
                passes0 = passes(metrics_url)
                pass_time0 = scrape(metrics_url, "clusterop_reconcile_duration_seconds_sum")
                cpu0 = proc_cpu_seconds(pid)
                if audit:
                    audit.mark()
                say(f"scale {n}: applying {n} ManagerClusters from {cfg.apply_threads} threads")
                t0 = time.monotonic()
                self.in_parallel(lambda body: self.apply(ns, body), bodies)
                t_applied = time.monotonic()
                all_ready = w.wait(names, cfg.ready_timeout)
                t_ready = max(w.ready_at.values()) if w.ready_at else time.monotonic()
                cpu1 = proc_cpu_seconds(pid)
                passes1 = passes(metrics_url)
                pass_time1 = scrape(metrics_url, "clusterop_reconcile_duration_seconds_sum")
                result.update(
                    forming_pass_seconds_mean=round((pass_time1 - pass_time0) / max(passes1 - passes0, 1), 3),
                    forming_passes_per_cluster=round((passes1 - passes0) / n, 1),
                    apply_seconds=round(t_applied - t0, 2),
                    all_ready=all_ready,
                    ready_count=sum(1 for nm in names if nm in w.ready_at),
                    ready_after_apply_seconds=round(t_ready - t_applied, 2),
                    wall_seconds=round(t_ready - t0, 2),
                    forming_cpu_seconds=round(cpu1 - cpu0, 2),
                    forming_apiserver_writes=dict(audit.writes()) if audit else None,
                    rss_peak_mib=round(proc_status_kib(pid, "VmHWM") / 1024, 1),
                )
                say(
                    f"scale {n}: {result['ready_count']}/{n} Ready {result['ready_after_apply_seconds']}s after "
                    f"the apply ({result['apply_seconds']}s); peak RSS {result['rss_peak_mib']} MiB"
                )
                result["steady"] = self.steady(pid, n, audit, metrics_url)
                result["rss_peak_mib"] = round(proc_status_kib(pid, "VmHWM") / 1024, 1)
                result["rss_end_mib"] = round(proc_status_kib(pid, "VmRSS") / 1024, 1)
                result["cpu_seconds_total"] = round(proc_cpu_seconds(pid), 2)
            finally:
                self.stop_profiler(profiler)
                w.close()
            say(f"scale {n}: deleting the ManagerClusters")
            self.delete_all(ns)
        return result

    def steady(self, pid: int, n: int, audit: AuditLog | None, metrics_url: str) -> dict[str, Any]:
        cfg = self.config
        window = cfg.steady_intervals * cfg.resync_seconds
        quiet_after = 0.0
        if audit:  # formation's last writes (kopf posts events from a queue) are not the steady state
            t = time.monotonic()
            audit.mark()
            while time.monotonic() - t < 2 * window:
                time.sleep(cfg.quiet_seconds)
                if not audit.writes():
                    break
                audit.mark()
            quiet_after = time.monotonic() - t
        say(f"steady {n}: watching for {window:.0f}s ({cfg.steady_intervals:g} resync intervals)")
        self.sim.reset_requests()
        if audit:
            audit.mark()
        passes0, cpu0, t0 = passes(metrics_url), proc_cpu_seconds(pid), time.monotonic()
        time.sleep(window)
        cpu1, t1 = proc_cpu_seconds(pid), time.monotonic()
        done = passes(metrics_url) - passes0
        log = self.sim.requests_log()
        writes = audit.writes() if audit else Counter()
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
        }

    def start_profiler(self, pid: int, n: int) -> subprocess.Popen[bytes] | None:
        if not self.config.profile or n != max(self.config.levels):
            return None
        pyspy = Path(sys.executable).parent / "py-spy"
        if not pyspy.exists():
            say("no py-spy in the venv (pip install py-spy): not profiling")
            return None
        target = self.config.out / f"profile-{n}.txt"
        say(f"profiling the operator with py-spy into {target}")
        return subprocess.Popen(
            [str(pyspy), "record", "--pid", str(pid), "--rate", "50", "--format", "raw", "--output", str(target),
             "--threads", "--idle", "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    @staticmethod
    def stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
            with suppress(subprocess.TimeoutExpired):
                proc.wait(60)


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


# -- report -----------------------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def row(name: str, target: str, value: Any, met: bool) -> None:
        rows.append({"target": name, "wanted": target, "measured": value, "met": bool(met)})

    lat = results.get("latency")
    if lat:
        row("bootstrap latency, delays 0 (median)", f"<= {TARGET_LATENCY_S} s", lat["zero_delay"]["median"],
            lat["zero_delay"]["median"] <= TARGET_LATENCY_S)  # fmt: skip
        ratio = lat["ratio"]
        row("CLI procedure / operator (median)", f">= {TARGET_CLI_RATIO}x", ratio, ratio >= TARGET_CLI_RATIO)
    for lv in results.get("scale", []):
        n = lv["clusters"]
        row(f"{n} clusters: all Ready after the apply", f"<= {TARGET_READY_S:g} s", lv["ready_after_apply_seconds"],
            lv["all_ready"] and lv["ready_after_apply_seconds"] <= TARGET_READY_S)  # fmt: skip
        rss = lv["rss_peak_mib"]
        row(f"{n} clusters: peak RSS", f"<= {TARGET_RSS_MIB:g} MiB", rss, rss <= TARGET_RSS_MIB)
        st = lv["steady"]
        row(f"{n} clusters: steady apiserver writes", "0", st["apiserver_writes"], st["apiserver_writes"] == 0)
        row(f"{n} clusters: steady manager writes", "0", st["manager_writes"], st["manager_writes"] == 0)
        # a pass in flight at each edge of the window may be counted on one side only: 2 requests of slack
        within = st["manager_gets"] <= TARGET_GETS_PER_RESYNC * st["passes"] + 2
        row(f"{n} clusters: manager GETs per cluster per resync", f"<= {TARGET_GETS_PER_RESYNC:g}",
            st["gets_per_cluster_per_resync"], within)  # fmt: skip
        row(f"{n} clusters: steady CPU share", f"<= {TARGET_CPU_SHARE:.0%}", f"{st['cpu_share']:.1%}",
            st["cpu_share"] <= TARGET_CPU_SHARE)  # fmt: skip
    return rows


def render_table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    lat = results.get("latency")
    if lat:
        lines += [
            "Bootstrap latency of a 3-node ManagerCluster (apply -> Ready), seconds",
            "| case | median | min | max | runs |",
            "|---|---|---|---|---|",
        ]
        for label, key in (
            ("operator, simulator delays 0", "zero_delay"),
            (f"operator, start/join delays {lat['delays']['start_delay']}s", "operator"),
            (f"4.0 CLI procedure (poll {lat['delays']['cli_poll']:g}s), same delays", "cli40"),
        ):
            s = lat[key]
            lines.append(f"| {label} | {s['median']:.3f} | {s['min']:.3f} | {s['max']:.3f} | {len(s['runs'])} |")
        lines += [f"CLI procedure / operator: {lat['ratio']:.1f}x", ""]
    scale = results.get("scale") or []
    if scale:
        lines += [
            f"Scale and steady state (resync {results['settings']['resync_seconds']:g}s; steady window = "
            f"{results['settings']['steady_intervals']:g} resyncs)",
            "| clusters | apply s | Ready after apply s | peak RSS MiB | CPU s forming | steady apiserver writes "
            "| steady manager writes | manager GETs/cluster/resync | steady CPU |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for lv in scale:
            st = lv["steady"]
            ready = f"{lv['ready_after_apply_seconds']:.1f}"
            if not lv["all_ready"]:
                ready += f" (only {lv['ready_count']} Ready)"
            lines.append(
                f"| {lv['clusters']} | {lv['apply_seconds']:.1f} | {ready} | {lv['rss_peak_mib']:.0f} | "
                f"{lv['forming_cpu_seconds']:.1f} | {st['apiserver_writes']} | {st['manager_writes']} | "
                f"{st['gets_per_cluster_per_resync']:.2f} | {st['cpu_share']:.1%} |"
            )
        lines.append("")
    rows = results.get("targets") or []
    if rows:
        lines += ["Targets", "| target | wanted | measured | met |", "|---|---|---|---|"]
        lines += [f"| {r['target']} | {r['wanted']} | {r['measured']} | {'yes' if r['met'] else 'NO'} |" for r in rows]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = results.get("scale") or []
    if not scale:
        return
    xs = [lv["clusters"] for lv in scale]
    panels = [
        ("Ready after the apply (s)", [lv["ready_after_apply_seconds"] for lv in scale], TARGET_READY_S),
        ("operator peak RSS (MiB)", [lv["rss_peak_mib"] for lv in scale], TARGET_RSS_MIB),
        ("operator CPU while forming (s)", [lv["forming_cpu_seconds"] for lv in scale], None),
        ("steady CPU share (% of a core)", [100 * lv["steady"]["cpu_share"] for lv in scale], 100 * TARGET_CPU_SHARE),
        ("manager GETs / cluster / resync", [lv["steady"]["gets_per_cluster_per_resync"] for lv in scale],
         TARGET_GETS_PER_RESYNC),
        ("steady writes (apiserver + managers)",
         [lv["steady"]["apiserver_writes"] + lv["steady"]["manager_writes"] for lv in scale], None),
    ]  # fmt: skip
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (title, ys, target) in zip(axes.flat, panels, strict=True):
        ax.plot(xs, ys, marker="o")
        if target is not None:
            ax.axhline(target, color="red", linestyle="--", linewidth=1, label="target")
            ax.legend(loc="upper left", fontsize=8)
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("ManagerClusters (3 nodes each)")
        ax.set_ylim(0, 1.2 * max([*ys, target or 0]) or 1.0)  # room above the target line and the points
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"cloudify-cluster-operator, {results['machine']['cpus']} cores, resync "
                 f"{results['settings']['resync_seconds']:g}s ({results['date']})")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- main -------------------------------------------------------------------------------------------


def run(config: Config, bed: TestBed | None = None) -> dict[str, Any]:
    """The whole benchmark; uses `bed` (it must have an audit log) or starts its own."""
    fds = raise_fd_limit()
    config.out.mkdir(parents=True, exist_ok=True)
    own_bed = bed is None
    if bed is None:
        say("starting the control plane")
        bed = TestBed(audit=True).start()
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
            "operator_has_kubernetes_client": has_module(config.operator_python, "kubernetes"),
        },
    }
    try:
        with bed.api_client(connection_pool_maxsize=config.apply_threads + 4) as api:
            apply_crd(api)
            kubeconfig = setup_operator_identity(bed, api, config.out)
            t = time.monotonic()
            with SimulatorProcess(machines=0, start_delay=0, join_delay=0, failover_delay=3.0) as sim:
                results["simulator_start_seconds"] = round(time.monotonic() - t, 2)
                bench = Bench(config, bed, sim, api, kubeconfig, results)
                if config.runs > 0:
                    results["latency"] = bench.latency()
                results["scale"] = []
                for n in config.levels:
                    results["scale"].append(bench.level(n))
                    write(results, config)  # keep what is done if a later level fails
                results["simulator_rss_mib"] = round(proc_status_kib(sim.proc.pid, "VmRSS") / 1024, 1)
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
    p.add_argument("--profile", action="store_true", help="py-spy record the operator at the largest level")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--operator-arg", action="append", default=[], help="extra operator flag (repeatable)")
    p.add_argument("--operator-env", action="append", default=[], help="NAME=VALUE for the operator (repeatable)")
    p.add_argument("--operator-python", default=sys.executable, help="the operator's interpreter (default: this one)")
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
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    results = run(config)
    print(render_table(results))
    print(f"\nJSON: {config.out / 'bench.json'}" + (f"  plot: {config.out / 'bench.png'}" if config.plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
