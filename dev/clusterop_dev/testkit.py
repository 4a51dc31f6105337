"""The one place for the small helpers that tests and dev tooling share: free loopback ports,
waiting for a condition, putting a Secret, and Ready as the operator reports it.

Imports nothing heavy at module level (the test bed's CLI uses it without the kubernetes client).
"""

from __future__ import annotations

import base64
import random
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class Timeout(AssertionError):
    """wait_for gave up (an AssertionError, so a test fails rather than errors)."""


#: Ports this process handed out: never handed out again (the holder may not have bound it yet).
_HANDED: set[int] = set()
_LOWEST = 10000


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1, never handed out twice by this process.

    Picked below the kernel's ephemeral range: a port from bind(0) is in that range, and between
    this call and the holder's bind, any process's outgoing connection may take it as its source
    port (the bind then fails with "address in use"). Below the range nothing is assigned
    automatically, so a port free now stays free until someone binds it on purpose."""
    low, _ = _ephemeral_range()
    rng = random.SystemRandom()
    out: list[int] = []
    for _ in range(2000 * count):
        if len(out) == count:
            return out
        port = rng.randrange(_LOWEST, low) if low - _LOWEST >= 1000 else _bind_zero()
        if port in _HANDED or port in out or not _bindable(port):
            continue
        out.append(port)
        _HANDED.add(port)
    raise RuntimeError(f"no {count} free ports on 127.0.0.1 below {low}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _bind_zero() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port() -> int:
    """One free TCP port on 127.0.0.1."""
    return free_ports(1)[0]


def wait_for(what: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05, message: str = "") -> T:
    """Poll until `what()` returns something truthy and return it; Timeout with the last value after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = what()
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {message or what}: last={last!r}")
        time.sleep(interval)


def put_secret(core: Any, namespace: str, name: str, data: Mapping[str, str]) -> None:
    """Create the Secret, or replace it when it exists (core: a kubernetes CoreV1Api)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    encoded: dict[str, bytes | str] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    body = client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=encoded)
    try:
        core.create_namespaced_secret(namespace, body)
    except ApiException as e:
        if e.status != 409:
            raise
        core.replace_namespaced_secret(name, namespace, body)


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    """The status condition of that type, if any."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conditions if c.get("type") == type_), None)


def is_ready(obj: Mapping[str, Any]) -> bool:
    """Ready=True for the object's current generation (a ManagerCluster as read or watched)."""
    ready = condition(obj, "Ready")
    observed = (obj.get("status") or {}).get("observedGeneration")
    return bool(ready and ready.get("status") == "True" and observed == obj["metadata"].get("generation"))
