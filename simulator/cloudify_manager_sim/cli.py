"""`cloudify-manager-sim`: parse options, start the simulator, announce it, serve until a signal."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from cloudify_manager_sim.config import DEFAULT_USERS, Behaviour, Delays, Options, parse_users
from cloudify_manager_sim.server import Simulator


def _delay(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("delays are >= 0 seconds")
    return value


def _prefix(text: str) -> str:
    text = text.rstrip("/")
    if text and not text.startswith("/"):
        raise argparse.ArgumentTypeError("the endpoint prefix starts with /")
    return text


def build_parser() -> argparse.ArgumentParser:
    d, b = Delays(), Behaviour()
    p = argparse.ArgumentParser(
        prog="cloudify-manager-sim",
        description="Simulate Cloudify Manager 4.0 machines and their cluster API (see docs/simulator.md).",
    )
    p.add_argument("--machines", type=int, default=3, help="machines to start with (default 3)")
    p.add_argument("--host", default="127.0.0.1", help="address every port binds to (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="control API port; 0 picks a free one (default 0)")
    p.add_argument("--endpoint-prefix", type=_prefix, default="", help="path prefix of every machine endpoint")
    p.add_argument(
        "--advertise-host",
        default="",
        help="host written into the announced endpoints and control URL (default: --host), e.g. a Service name",
    )
    p.add_argument(
        "--machine-base-port",
        type=int,
        default=0,
        help="machine i listens on this port + i (fixed ports for a Kubernetes Service); 0: ephemeral (default)",
    )
    p.add_argument("--users", default=DEFAULT_USERS, help=f"name:password:role,... (default {DEFAULT_USERS})")
    p.add_argument("--start-delay", type=_delay, default=d.start, help=f"seconds a bootstrap takes ({d.start})")
    p.add_argument("--join-delay", type=_delay, default=d.join, help=f"seconds a join takes ({d.join})")
    p.add_argument(
        "--failover-delay", type=_delay, default=d.failover, help=f"master offline -> new master ({d.failover})"
    )
    p.add_argument(
        "--forbidden-status",
        type=int,
        choices=(401, 403),
        default=b.forbidden_status,
        help="non-admin writes: 401 unauthorized_error (4.0) or 403 forbidden_error (4.2+)",
    )
    p.add_argument(
        "--not-master-status",
        type=int,
        default=b.not_master_status,
        help="status of not_cluster_master answers from replicas (400)",
    )
    p.add_argument(
        "--removed-status", type=int, default=b.removed_status, help="status of removed_from_cluster answers (400)"
    )
    p.add_argument(
        "--not-found-status",
        type=int,
        default=b.not_found_status,
        help="status for nodes before a cluster exists and unknown node ids (404)",
    )
    p.add_argument(
        "--put-on-initialized",
        choices=("reject", "ignore"),
        default=b.put_on_initialized,
        help="PUT on a clustered or busy node: 400 bad_parameters_error, or 200 and ignore",
    )
    p.add_argument(
        "--node-gate",
        choices=("before-auth", "after-auth"),
        default=b.node_gate,
        help="check replica/removed before or after authentication",
    )
    p.add_argument(
        "--no-strict-host-ip",
        dest="strict_host_ip",
        action="store_false",
        help="accept a PUT host_ip that is not the machine's own",
    )
    p.add_argument(
        "--hide-joining",
        dest="list_joining",
        action="store_false",
        help="do not list joining nodes (online false) in the master's node list",
    )
    p.add_argument(
        "--trailing-slash",
        choices=("reject", "accept"),
        default=b.trailing_slash,
        help="/api/v3/cluster/ answers 404 (reject, like Flask) or is served",
    )
    p.add_argument("--tls-cert", default="", help="PEM certificate: machines serve https with it")
    p.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")
    p.add_argument(
        "--start-glitches",
        type=int,
        default=b.start_glitches,
        help="the first N requests to a starting node answer 502 (default 0)",
    )
    return p


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        machines=args.machines,
        host=args.host,
        port=args.port,
        endpoint_prefix=args.endpoint_prefix,
        advertise_host=args.advertise_host,
        base_port=args.machine_base_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        users=parse_users(args.users),
        delays=Delays(start=args.start_delay, join=args.join_delay, failover=args.failover_delay),
        behaviour=Behaviour(
            forbidden_status=args.forbidden_status,
            not_master_status=args.not_master_status,
            removed_status=args.removed_status,
            not_found_status=args.not_found_status,
            put_on_initialized=args.put_on_initialized,
            node_gate=args.node_gate,
            strict_host_ip=args.strict_host_ip,
            list_joining=args.list_joining,
            trailing_slash=args.trailing_slash,
            start_glitches=args.start_glitches,
        ),
    )


async def serve(options: Options) -> None:
    sim = Simulator(options)
    await sim.start()
    sys.stdout.write(json.dumps(sim.announcement()) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = options_from(args)
    except ValueError as e:
        build_parser().error(str(e))
    asyncio.run(serve(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
