#!/usr/bin/env python3
"""Load the manager simulator: many machines, many clusters, sustained request rate.

Starts `cloudify-manager-sim` (via cloudify_manager_sim.harness) on loopback with --machines N,
optionally forms clusters of 3 machines, then drives authenticated GETs (GET /api/v3/cluster
and GET /api/v3/cluster/nodes, round-robin over every machine) from an aiohttp client with a
bounded concurrency for a bounded duration and a bounded request count. Prints a JSON report:
start-up time, simulator RSS, requests/s, latency percentiles, error count.

    .venv/bin/python hack/simload.py --machines 3000 --clusters 1000 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from typing import Any

import aiohttp

from cloudify_manager_sim.harness import SimulatorProcess

AUTH = "Basic " + base64.b64encode(b"admin:admin").decode()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def form_clusters(machines: list[dict[str, str]], clusters: int, session: aiohttp.ClientSession) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {"Authorization": AUTH, "Content-Type": "application/json"}
    sem = asyncio.Semaphore(64)

    async def put(machine: dict[str, str], body: dict[str, Any]) -> None:
        async with sem, session.put(machine["endpoint"] + "/api/v3/cluster", json=body, headers=headers) as r:
            if r.status != 200:
                raise RuntimeError(f"PUT {machine['host_ip']}: {r.status} {await r.text()}")

    groups = [machines[i * 3 : i * 3 + 3] for i in range(clusters)]
    await asyncio.gather(
        *(put(g[0], {"host_ip": g[0]["host_ip"], "node_name": "m0", "encryption_key": key}) for g in groups)
    )
    await asyncio.sleep(0.2)
    await asyncio.gather(
        *(
            put(
                m,
                {"host_ip": m["host_ip"], "node_name": f"m{i}", "encryption_key": key, "join_addrs": [g[0]["host_ip"]]},
            )
            for g in groups
            for i, m in enumerate(g[1:], start=1)
        )
    )


async def drive(machines: list[dict[str, str]], duration: float, max_requests: int, concurrency: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, force_close=False)
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    issued = 0
    deadline = time.monotonic() + duration
    paths = ("/api/v3/cluster", "/api/v3/cluster/nodes")
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": AUTH}) as session:

        async def worker(offset: int) -> None:
            nonlocal issued, errors
            i = offset
            while time.monotonic() < deadline and issued < max_requests:
                issued += 1
                machine = machines[i % len(machines)]
                url = machine["endpoint"] + paths[(i // len(machines)) % 2]
                i += concurrency
                t0 = time.perf_counter()
                try:
                    async with session.get(url) as r:
                        await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)

        started = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.monotonic() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2) if latencies else 0.0

    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
        "statuses": statuses,
        "errors": errors,
    }


async def run(args: argparse.Namespace, sim: SimulatorProcess) -> dict[str, Any]:
    machines = list(sim.machines)
    report: dict[str, Any] = {}
    if args.clusters:
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as session:
            await form_clusters(machines, args.clusters, session)
        deadline = time.monotonic() + 60
        while True:
            formed = [c for c in sim.clusters() if sum(m["initialized"] for m in c["members"]) == 3]
            if len(formed) == args.clusters or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        report["clusters_formed"] = len(formed)
        report["cluster_forming_seconds"] = round(time.monotonic() - t0, 2)
    sim.reset_requests()
    report["load"] = await drive(machines, args.duration, args.max_requests, args.concurrency)
    report["simulator_counted_requests"] = sim.requests_log()["total"]
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--machines", type=int, default=3000)
    p.add_argument("--clusters", type=int, default=1000, help="clusters of 3 formed before the load (0: none)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load (bounded)")
    p.add_argument("--max-requests", type=int, default=200_000, help="stop after this many requests")
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args()
    if args.clusters * 3 > args.machines:
        p.error("--clusters needs 3 machines each")
    args.duration = min(args.duration, 120.0)
    t0 = time.monotonic()
    with SimulatorProcess(
        args.machines, start_delay=0.0, join_delay=0.0, failover_delay=1.0, startup_timeout=120
    ) as sim:
        startup = time.monotonic() - t0
        report: dict[str, Any] = {"machines": len(sim.machines), "startup_seconds": round(startup, 2)}
        report["simulator_rss_mib_idle"] = round(rss_mib(sim.proc.pid), 1)
        report.update(asyncio.run(run(args, sim)))
        report["simulator_rss_mib_after"] = round(rss_mib(sim.proc.pid), 1)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
