#!/usr/bin/env python3
"""The floor: the least a kopf operator does to form a ManagerCluster, for `bench --floor`.

Not the product, and not safe: it is the yardstick of issue 17's "throwaway kopf operator". One
edge-triggered `on.create` handler per object (no daemon, no finalizer, no resync, no intent
written before a manager write, no Events, no retries): it reads the two Secrets, starts the
first node, joins the others one by one with polls every 20 ms on a kept-alive session, and
writes status once, Ready. What the bench measures with it is what kopf and the machine cost for
a formation, so the product's own figures can be read against it: the product adds the
observation and the record that guard each write (four status writes and four Events per 3-node
cluster), a daemon per object and its finalizer.

    python hack/floor_operator.py --metrics-port PORT [--metrics-addr ADDR] [ignored operator args]

Serves `clusterop_reconcile_total` and `clusterop_reconcile_duration_seconds` (one "pass" per
formation) so the bench reads it as it reads the operator.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import threading
import time
from typing import Any

import kopf
import prometheus_client
import pykube
import requests

GROUP, VERSION, PLURAL = "cloudify.co", "v1alpha1", "managerclusters"
API = "/api/v3/cluster"
POLL = 0.02
TIMEOUT = 120.0

PASSES = prometheus_client.Counter("clusterop_reconcile", "formations", ["outcome"])
SECONDS = prometheus_client.Histogram("clusterop_reconcile_duration_seconds", "seconds per formation")

_local = threading.local()
_secrets: dict[tuple[str, str], dict[str, str]] = {}
_secrets_lock = threading.Lock()
_kube: pykube.HTTPClient | None = None


def session() -> requests.Session:
    if getattr(_local, "session", None) is None:
        _local.session = requests.Session()
        _local.session.trust_env = False
    return _local.session  # type: ignore[no-any-return]


def secret(namespace: str, name: str) -> dict[str, str]:
    with _secrets_lock:
        found = _secrets.get((namespace, name))
    if found is not None:
        return found
    assert _kube is not None
    r = _kube.get(version="v1", namespace=namespace, url=f"secrets/{name}")
    r.raise_for_status()
    found = {k: base64.b64decode(v).decode() for k, v in (r.json().get("data") or {}).items()}
    with _secrets_lock:
        _secrets[(namespace, name)] = found
    return found


def call(method: str, url: str, auth: tuple[str, str], body: dict[str, Any] | None = None) -> requests.Response:
    return session().request(method, url, json=body, auth=auth, timeout=5)


def until(what: str, done: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not done():
        if time.monotonic() > deadline:
            raise kopf.TemporaryError(f"timed out waiting for {what}", delay=5)
        time.sleep(POLL)


def form(nodes: list[dict[str, str]], key: str, auth: tuple[str, str]) -> None:
    first = nodes[0]
    master = first["endpoint"].rstrip("/")
    call("PUT", master + API, auth, {"host_ip": first["hostIP"], "node_name": first["name"], "encryption_key": key})
    until("the start", lambda: bool(call("GET", master + API, auth).json().get("initialized")))
    for node in nodes[1:]:
        members = call("GET", master + API + "/nodes", auth).json()["items"]
        body = {
            "host_ip": node["hostIP"],
            "node_name": node["name"],
            "encryption_key": key,
            "join_addrs": [m["host_ip"] for m in members],
        }
        call("PUT", node["endpoint"].rstrip("/") + API, auth, body)

        def online(name: str = node["name"]) -> bool:
            items = call("GET", master + API + "/nodes", auth).json()["items"]
            return any(m["name"] == name and m.get("online") for m in items)

        until(f"{node['name']} online", online)


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 16  # as many as the operator's pass threads
    settings.watching.server_timeout = 300


@kopf.on.create(GROUP, VERSION, PLURAL)
def formed(spec: kopf.Spec, meta: kopf.Meta, namespace: str, patch: kopf.Patch, **_: Any) -> None:
    started = time.monotonic()
    credentials = secret(namespace, spec["credentialsSecretRef"]["name"])
    key = secret(namespace, spec["encryptionKeySecretRef"]["name"])["encryptionKey"]
    form(list(spec["nodes"]), key, (credentials["username"], credentials["password"]))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    patch.status["observedGeneration"] = meta["generation"]
    patch.status["conditions"] = [
        {"type": "Ready", "status": "True", "reason": "Formed", "message": "floor", "lastTransitionTime": now}
    ]
    PASSES.labels("ok").inc()
    SECONDS.observe(time.monotonic() - started)


def main() -> None:
    global _kube
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--metrics-addr", default="127.0.0.1")
    args, _ignored = p.parse_known_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    prometheus_client.start_http_server(args.metrics_port, addr=args.metrics_addr)
    _kube = pykube.HTTPClient(pykube.KubeConfig.from_env(), timeout=15)
    _kube.session.trust_env = False
    asyncio.run(kopf.operator(standalone=True, clusterwide=True))


if __name__ == "__main__":
    main()
