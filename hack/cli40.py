#!/usr/bin/env python3
"""What the Cloudify 4.0 CLI did to form a cluster, against real managers or the simulator.

The benchmark's yardstick (issue 7, 1a): plain `requests`, one connection per request as the
4.0 REST client made them, a 5 s per-request timeout and a poll every 3 s:

1. `PUT /cluster` on the first node (start), then `GET /cluster` on it every 3 s until it
   answers `initialized: true`;
2. for every other node: read the members from the master's `GET /cluster/nodes`, `PUT
   /cluster` on the joiner with `join_addrs` = every member's `host_ip`, poll the joiner every
   3 s until it answers 400 `not_cluster_master` (it joined and blocked its REST API), then poll
   the master's node list every 3 s until the joiner is `online: true`.

Each wait checks at once and then every `--poll` seconds. Prints one JSON line: the seconds
from the first request to the last node online, and the number of requests sent.

    hack/cli40.py --node NAME=HOST_IP=ENDPOINT --node ... --key BASE64 [--poll 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import requests

API = "/api/v3/cluster"
REQUEST_TIMEOUT = 5.0


class CliError(RuntimeError):
    pass


class Cli40:
    def __init__(self, username: str, password: str, poll: float = 3.0, timeout: float = 900.0) -> None:
        token = base64.urlsafe_b64encode(f"{username}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-type": "application/json"}
        self.poll = poll
        self.timeout = timeout
        self.requests = 0

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> requests.Response:
        self.requests += 1
        return requests.request(
            method, url, headers=self.headers, data=json.dumps(body) if body is not None else None,
            timeout=REQUEST_TIMEOUT,
        )  # fmt: skip

    def _wait(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() > deadline:
                raise CliError(f"timed out waiting for {what}")
            time.sleep(self.poll)

    def start(self, name: str, host_ip: str, endpoint: str, key: str) -> None:
        r = self._call("GET", endpoint + API)
        if r.status_code == 200 and r.json().get("initialized"):
            raise CliError("This manager machine is already part of a Cloudify Manager cluster")
        r = self._call("PUT", endpoint + API, {"host_ip": host_ip, "node_name": name, "encryption_key": key})
        if r.status_code != 200:
            raise CliError(f"start {name}: HTTP {r.status_code}: {r.text}")

        def initialized() -> bool:
            state = self._call("GET", endpoint + API)
            if state.status_code != 200:
                return False
            body = state.json()
            if body.get("error"):
                raise CliError(f"start {name} failed: {body['error']}")
            return bool(body.get("initialized"))

        self._wait(f"{name} to initialize", initialized)

    def join(self, master: str, name: str, host_ip: str, endpoint: str, key: str) -> None:
        members = self._nodes(master)
        body = {
            "host_ip": host_ip,
            "node_name": name,
            "encryption_key": key,
            "join_addrs": [m["host_ip"] for m in members],
        }
        r = self._call("PUT", endpoint + API, body)
        if r.status_code != 200:
            raise CliError(f"join {name}: HTTP {r.status_code}: {r.text}")

        def blocked() -> bool:
            state = self._call("GET", endpoint + API)
            if state.status_code == 400 and state.json().get("error_code") == "not_cluster_master":
                return True
            if state.status_code == 200 and state.json().get("error"):
                raise CliError(f"join {name} failed: {state.json()['error']}")
            return False

        def online() -> bool:
            return any(m["name"] == name and m.get("online") for m in self._nodes(master))

        self._wait(f"{name} to join", blocked)
        self._wait(f"{name} to be online", online)

    def _nodes(self, master: str) -> list[dict[str, Any]]:
        r = self._call("GET", master + API + "/nodes")
        if r.status_code != 200:
            raise CliError(f"node list: HTTP {r.status_code}: {r.text}")
        items: list[dict[str, Any]] = r.json()["items"]
        return items


def form(cli: Cli40, nodes: list[tuple[str, str, str]], key: str) -> float:
    """Start on the first node, join the others one by one; returns the seconds it took."""
    started = time.monotonic()
    first_name, first_ip, master = nodes[0]
    cli.start(first_name, first_ip, master, key)
    for name, host_ip, endpoint in nodes[1:]:
        cli.join(master, name, host_ip, endpoint, key)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--node", action="append", required=True, help="NAME=HOST_IP=ENDPOINT, the first is started")
    p.add_argument("--key", required=True, help="the encryption key (base64 of 16 bytes)")
    p.add_argument("--username", default="admin")
    p.add_argument("--password", default="admin")
    p.add_argument("--poll", type=float, default=3.0, help="seconds between status polls (the CLI used 3)")
    p.add_argument("--timeout", type=float, default=900.0)
    args = p.parse_args(argv)
    nodes = []
    for spec in args.node:
        name, host_ip, endpoint = spec.split("=", 2)
        nodes.append((name, host_ip, endpoint.rstrip("/")))
    cli = Cli40(args.username, args.password, poll=args.poll, timeout=args.timeout)
    try:
        seconds = form(cli, nodes, args.key)
    except (CliError, requests.RequestException) as e:
        print(json.dumps({"error": str(e), "requests": cli.requests}))
        return 1
    print(json.dumps({"seconds": round(seconds, 4), "requests": cli.requests, "nodes": len(nodes)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
