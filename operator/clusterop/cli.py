"""`cloudify-cluster-operator`: run the operator against the current kubeconfig.

KUBECONFIG (or ~/.kube/config) outside a cluster, the pod's ServiceAccount inside one. It
installs nothing into the cluster: the CRD comes from crds/ (or the Helm chart).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from . import handlers, memory, metrics, redact
from .client import make_session, pools_for, quiet_insecure_warnings
from .kube import Kube
from .leader import Elector, LeaseConfig, default_identity, default_namespace
from .pacing import PacingSettings
from .reconciler import Reconciler, Settings
from .shards import Shards

log = logging.getLogger("clusterop.cli")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cloudify-cluster-operator", description=__doc__)
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    p.add_argument("--resync-seconds", type=float, default=30.0, help="timer between passes of a steady cluster")
    p.add_argument("--workers", type=int, default=16, help="reconcile passes running at once")
    p.add_argument("--request-timeout", type=float, default=5.0, help="seconds to wait for a manager's answer")
    p.add_argument("--connect-timeout", type=float, default=2.0, help="seconds to wait for a manager connection")
    p.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL; '' disables")
    p.add_argument("--metrics-port", type=int, default=9090, help="Prometheus metrics port; 0 disables")
    p.add_argument("--metrics-addr", default="0.0.0.0")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument(
        "--peering",
        default=None,
        metavar="NAME",
        help="coordinate with other instances through this (Cluster)KopfPeering object; default: standalone",
    )
    p.add_argument("--priority", type=int, default=0, help="peering priority (higher wins)")
    p.add_argument(
        "--peering-lifetime", type=int, default=60, help="seconds a silent peer is presumed alive (takeover time)"
    )
    p.add_argument(
        "--watch-secrets",
        choices=["auto", "on", "off"],
        default="auto",
        help="react at once to Secret changes (auto: on when namespaced, off cluster-wide)",
    )
    p.add_argument(
        "--stall-seconds",
        type=float,
        default=None,
        help="liveness fails when an object's loop has not finished a pass for this long (default max(120, 4x resync))",
    )
    p.add_argument(
        "--secret-cache-seconds",
        type=float,
        default=300.0,
        help="re-read a referenced Secret at most this often (at once when it changes in namespaced mode "
        "or when the managers refuse the credentials)",
    )
    p.add_argument("--delete-timeout", type=float, default=300.0, help="give up removing nodes on delete after this")
    le = p.add_argument_group("leader election (a coordination.k8s.io/v1 Lease, as client-go does it)")
    le.add_argument(
        "--leader-elect",
        action="store_true",
        help="only the holder of the Lease runs passes and writes to managers (run several replicas safely)",
    )
    le.add_argument("--leader-elect-lease-duration", type=float, default=15.0, help="seconds a Lease is valid")
    le.add_argument(
        "--leader-elect-renew-deadline", type=float, default=10.0, help="stop leading after failing to renew this long"
    )
    le.add_argument(
        "--leader-elect-retry-period", type=float, default=2.0, help="seconds between tries to acquire or renew"
    )
    le.add_argument("--leader-elect-lease-name", default="cloudify-cluster-operator", help="the Lease's name")
    le.add_argument(
        "--leader-elect-lease-namespace",
        default=None,
        help="the Lease's namespace (default: POD_NAMESPACE, the pod's own namespace, or default)",
    )
    le.add_argument(
        "--leader-elect-identity", default=None, help="holder identity (default: POD_ID or host_pid_random)"
    )
    sh = p.add_argument_group("sharding (scale out: each replica reconciles a stable share of the objects)")
    sh.add_argument(
        "--shards",
        type=int,
        default=1,
        help="split the ManagerClusters among this many shard Leases (<lease name>-<i>-of-<N>); each replica "
        "holds one and reconciles the objects that hash to it; replicas beyond N are spares (implies --leader-elect)",
    )
    sh.add_argument(
        "--shard-index", type=int, default=None, help="the shard to try first (a StatefulSet's ordinal; default: by id)"
    )
    args = p.parse_args(argv)
    if args.shards < 1:
        p.error("--shards needs at least 1")
    if args.shard_index is not None and not 0 <= args.shard_index < args.shards:
        p.error(f"--shard-index {args.shard_index} is not below --shards {args.shards}")
    if args.shards > 1:
        args.leader_elect = True
    if args.leader_elect and not (
        args.leader_elect_lease_duration > args.leader_elect_renew_deadline > args.leader_elect_retry_period > 0
    ):
        p.error("leader election needs lease duration > renew deadline > retry period > 0")
    return args


def configure_logging(level: str, fmt: str) -> None:
    handlers.configure_logging(debug=level == "debug", quiet=level in ("warning", "error"), json_format=fmt == "json")
    logging.getLogger().setLevel(level.upper())
    for noisy in ("urllib3", "requests", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "debug" else logging.INFO)
    redact.install()
    quiet_insecure_warnings()


def raise_fd_limit() -> int:
    """The soft limit of open files raised to the hard one (as most servers do); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return int(soft if soft != resource.RLIM_INFINITY else 1 << 20)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    namespaced = bool(args.namespace)
    watch_secrets = args.watch_secrets == "on" or (args.watch_secrets == "auto" and namespaced)
    if watch_secrets:
        handlers.register_secret_watch()
    memory.limit_arenas()
    memory.trim_every(10.0)
    kube = Kube.from_env(secret_max_age=args.secret_cache_seconds)
    identity = args.leader_elect_identity or default_identity()
    elector: Elector | Shards | None = None
    if args.leader_elect:
        # Its own client: renewals never queue behind passes in the shared connection pool.
        lease_kube = Kube.from_env(secret_max_age=args.secret_cache_seconds)
        lease = LeaseConfig(
            name=args.leader_elect_lease_name,
            namespace=args.leader_elect_lease_namespace or default_namespace(),
            identity=identity,
            lease_duration=args.leader_elect_lease_duration,
            renew_deadline=args.leader_elect_renew_deadline,
            retry_period=args.leader_elect_retry_period,
        )
        if args.shards > 1:
            elector = Shards(lease_kube, lease, args.shards, args.shard_index)
        else:
            elector = Elector(lease_kube, lease)
    # A pool per manager, kept: a smaller LRU (1,024) thrashed while 1,000 clusters formed (3,000
    # managers), closing connections under urllib3's pool lock, which the 64 pass and fan-out
    # threads then queued on (docs/performance.md, round two). Bounded by the open-file limit.
    fd_limit = raise_fd_limit()
    pools = pools_for(fd_limit)
    manager_session = make_session(pool_hosts=pools)
    log.info("Open files limit %d: keep-alive connections to up to %d managers", fd_limit, pools)

    def agent(term: int | None = None, holds: str = "leader") -> None:
        """The managers' access logs say which instance wrote, in which leader term (and shard)."""
        tag = identity if term is None else f"{identity}; term {term}"
        if term is not None and holds != "leader":
            tag += f"; {holds}"
        manager_session.headers["User-Agent"] = f"cloudify-cluster-operator ({tag})"

    agent()
    fanout = ThreadPoolExecutor(max_workers=max(8, args.workers * 3), thread_name_prefix="manager")
    passes = ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="pass")
    reconciler = Reconciler(
        kube=kube,
        session=manager_session,
        pool=fanout,
        settings=Settings(
            request_timeout=(args.connect_timeout, args.request_timeout),
            # 50 ms after a write, every 0.1 s for a stage's first second, then backing off (pacing.py)
            pacing=PacingSettings(resync_seconds=args.resync_seconds),
        ),
        observer=metrics.observe_request,
        fence=elector.owns if elector is not None else (lambda ns, name: True),
    )
    runtime = handlers.Runtime(
        reconciler=reconciler,
        kube=kube,
        passes=passes,
        watch_secrets=watch_secrets,
        delete_timeout=args.delete_timeout,
        stall_after=args.stall_seconds or max(120.0, 4 * args.resync_seconds),
        # one watch stream per resource (ManagerClusters, Secrets, ConfigMaps, peering) and namespace
        api_connections=32 + 4 * max(1, len(args.namespace)),
        elector=elector,
    )
    stop_flag: asyncio.Event | None = None
    if elector is not None:
        stop_flag = asyncio.Event()

    def started() -> None:
        """In kopf's loop, once kopf has started."""
        if args.metrics_port:
            metrics.serve(args.metrics_port, args.metrics_addr)

    def watching() -> None:
        """In kopf's loop, once kopf watches ManagerClusters."""
        if elector is not None:
            _start_election(elector, runtime, stop_flag, agent)

    log.info(
        "Starting operator namespaces=%s resync=%ss workers=%d watch_secrets=%s",
        ",".join(args.namespace) or "*",
        args.resync_seconds,
        args.workers,
        watch_secrets,
    )
    try:
        handlers.run(
            runtime,
            handlers.RunOptions(
                namespaces=tuple(args.namespace),
                peering=args.peering,
                priority=args.priority,
                peering_lifetime=args.peering_lifetime,
                liveness=args.liveness or None,
            ),
            started=started,
            watching=watching,
            stop_flag=stop_flag,
        )
    except KeyboardInterrupt:
        pass
    finally:
        if elector is not None:
            elector.release()
        passes.shutdown(wait=False, cancel_futures=True)
        fanout.shutdown(wait=False, cancel_futures=True)
        reconciler.close()  # CA files
    return 0


def _start_election(
    elector: Elector | Shards,
    runtime: handlers.Runtime,
    stop_flag: asyncio.Event | None,
    agent: Callable[[int, str], None],
) -> None:
    """In kopf's loop: the pulse that wakes the object loops waiting for a claim, the elector's
    thread, and SIGTERM/SIGINT handlers that stop writing and release the Lease first, then stop
    kopf."""
    loop = asyncio.get_running_loop()

    def changed(now_leading: bool) -> None:
        if now_leading:
            agent(elector.term, elector.describe())  # before any pass of this term can run
        loop.call_soon_threadsafe(runtime.pulse)

    elector.on_change = changed

    def terminate(signum: int) -> None:
        log.info("Stopping signal=%s: releasing the lease", signal.Signals(signum).name)
        elector.release()  # a few ms: the successor takes over on its next try
        runtime.pulse()
        if stop_flag is not None:
            stop_flag.set()

    def install() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, terminate, sig)

    # After kopf's own handlers, which it installs right after its startup tasks began (ours
    # replace them and set kopf's stop flag themselves).
    loop.call_later(0.1, install)
    elector.start()


if __name__ == "__main__":
    sys.exit(main())
