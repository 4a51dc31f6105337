"""When the apiserver answers: /readyz and a first real read, failing at once when a child exits."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence

from clusterop_dev.testbed.common import TestBedError
from clusterop_dev.testbed.processes import Child

READY_PATHS = ("/readyz", "/api/v1/namespaces/default")


def answers(url: str, context: ssl.SSLContext, timeout: float = 5) -> tuple[bool, str]:
    """Whether GET url answers 200, and the error when it does not."""
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
            return response.status == 200, f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as e:
        return False, str(e)


def wait_ready(
    server: str, context: ssl.SSLContext, children: Iterable[Child], timeout: float, *,
    paths: Sequence[str] = READY_PATHS, interval: float = 0.1,
) -> None:  # fmt: skip
    """Until every path of `server` answers 200 (in order); TestBedError with the log's last lines
    as soon as one of `children` has exited, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    watched = list(children)
    last_error = "no answer yet"
    for path in paths:
        while True:
            for child in watched:
                if child.popen is not None and child.popen.poll() is not None:
                    raise TestBedError(
                        f"{child.name} exited with code {child.popen.returncode}; "
                        f"last lines of {child.log}:\n{child.log_tail()}"
                    )
            ok, last_error = answers(server + path, context)
            if ok:
                break
            if time.monotonic() > deadline:
                raise TestBedError(f"{server}{path} not ready after {timeout:.0f}s: {last_error}")
            time.sleep(interval)
