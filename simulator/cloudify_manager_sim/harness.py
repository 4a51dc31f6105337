"""`SimulatorProcess`: run `cloudify-manager-sim` as a subprocess and drive its control API.

For tests, benchmarks and scripts. Speaks to the simulator only over HTTP (requests).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import requests


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


class SimulatorError(RuntimeError):
    pass


class MachineList(list[dict[str, Any]]):
    """The announced machines ({host_ip, endpoint}, grown by add_machines); calling it
    (`sim.machines()`) fetches the live view from GET /control/machines instead."""

    def __init__(self, items: list[dict[str, Any]], owner: SimulatorControl) -> None:
        super().__init__(items)
        self._owner = owner

    def __call__(self) -> list[dict[str, Any]]:
        return self._owner.machines_now()


class SimulatorControl:
    """The control API of a simulator that runs elsewhere (in a cluster, reached through a
    port-forward): everything SimulatorProcess offers except the process."""

    def __init__(self, control: str, request_timeout: float = 10.0) -> None:
        self.control = control.rstrip("/")
        self.timeout = request_timeout
        self._session = requests.Session()
        self.machines = MachineList(
            [{"host_ip": m["host_ip"], "endpoint": m["endpoint"]} for m in self.machines_now()], self
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        self._session.close()
        return None

    # -- control API ----------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._session.request(method, self.control + path, json=body, timeout=self.timeout)
        if response.status_code != 200:
            raise SimulatorError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def health(self) -> bool:
        try:
            return self._session.get(self.control + "/health", timeout=self.timeout).status_code == 200
        except requests.RequestException:
            return False

    def machines_now(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/machines")["machines"]
        return result

    def machine(self, host_ip: str) -> dict[str, Any]:
        for m in self.machines_now():
            if m["host_ip"] == host_ip:
                return m
        raise SimulatorError(f"no machine {host_ip}")

    def clusters(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/clusters")["clusters"]
        return result

    def add_machines(self, n: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("POST", "/machines", {"count": n})["machines"]
        self.machines.extend({"host_ip": m["host_ip"], "endpoint": m["endpoint"]} for m in result)
        return result

    def offline(self, host_ip: str) -> None:
        self._call("POST", f"/machines/{host_ip}/offline")

    def online(self, host_ip: str) -> None:
        self._call("POST", f"/machines/{host_ip}/online")

    def latency(self, host_ip: str, seconds: float) -> None:
        self._call("POST", f"/machines/{host_ip}/latency", {"seconds": seconds})

    def faults(self, host_ip: str, kind: str, count: int = 1, hang_seconds: float = 30.0) -> None:
        self._call("POST", f"/machines/{host_ip}/faults", {"kind": kind, "count": count, "hang_seconds": hang_seconds})

    def fail_next(self, host_ip: str, op: str, error: str = "") -> None:
        self._call("POST", f"/machines/{host_ip}/fail-next", {"op": op, "error": error or None})

    def remove(self, host_ip: str) -> None:
        self._call("POST", "/remove", {"host_ip": host_ip})

    def set_users(self, users: str) -> None:
        self._call("POST", "/users", {"users": users})

    def set_delays(self, **delays: float) -> dict[str, float]:
        """set_delays(start_delay=.., join_delay=.., failover_delay=..)"""
        result: dict[str, float] = self._call("POST", "/config", delays)
        return result

    def requests_log(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/requests")
        return result

    def writes_log(self) -> list[dict[str, Any]]:
        """Every PUT, PATCH and DELETE in arrival order: time, host_ip, method, path, agent (User-Agent)."""
        result: list[dict[str, Any]] = self._call("GET", "/requests/writes")["writes"]
        return result

    def reset_requests(self) -> None:
        self._call("POST", "/requests/reset")

    def __enter__(self) -> SimulatorControl:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SimulatorProcess(SimulatorControl):
    """A running simulator; also a context manager (`with SimulatorProcess(...) as sim:`)."""

    def __init__(
        self,
        machines: int = 3,
        *,
        start_delay: float | None = None,
        join_delay: float | None = None,
        failover_delay: float | None = None,
        users: str | None = None,
        forbidden_status: int | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        startup_timeout: float = 60.0,
        request_timeout: float = 10.0,
    ) -> None:
        args = [sys.executable, "-m", "cloudify_manager_sim.cli", "--machines", str(machines), "--host", host]
        for flag, value in (
            ("--start-delay", start_delay),
            ("--join-delay", join_delay),
            ("--failover-delay", failover_delay),
            ("--users", users),
            ("--forbidden-status", forbidden_status),
        ):
            if value is not None:
                args += [flag, str(value)]
        args += list(extra_args)
        self.args = args
        self.timeout = request_timeout
        self._session = requests.Session()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=dict(os.environ))
        try:
            announcement = self._read_announcement(startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.control: str = announcement["control"]
        self.machines = MachineList(announcement["machines"], self)

    def _read_announcement(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        try:
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SimulatorError(f"simulator did not announce itself within {timeout}s")
                if not selector.select(left):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise SimulatorError(f"simulator exited before announcing itself (rc={self.proc.poll()})")
                line += chunk
        finally:
            selector.close()
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    # -- lifecycle ------------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit code."""
        self._session.close()
        code = stop_process(self.proc, timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def __enter__(self) -> SimulatorProcess:
        return self
