"""The one place for the small helpers that tests and dev tooling share: free loopback ports,
waiting for a condition, putting a Secret, and Ready as the operator reports it.

Imports nothing heavy at module level (the test bed's CLI uses it without the kubernetes client).
"""

from __future__ import annotations

import base64
import contextlib
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class Timeout(AssertionError):
    """wait_for gave up (an AssertionError, so a test fails rather than errors)."""


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (every socket is held until all are picked, so
    the same port is never handed out twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


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
