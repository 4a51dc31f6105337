"""Chaos fixtures: a simulator with short delays whose admin password is the session's secret,
the CRD, Secrets holding the session's key and password, and operators (debug logs) whose every
log line, Event, status, annotation and metric is scanned for those secrets when the test ends.

CHAOS_TRIALS (default 10), CHAOS_SEED (default: random, printed), CHAOS_PARALLEL (default 3).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes.client import ApiClient

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.harness import Clusters, OperatorProcess
from clusterop_dev.testbed import Cluster
from clusterop_dev.testkit import free_port

from .support import KEY, PASSWORD, USERS, SimView, find_secrets, kube_texts

SEED = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))
TRIALS = int(os.environ.get("CHAOS_TRIALS") or 10)
PARALLEL = int(os.environ.get("CHAOS_PARALLEL") or 3)
SIM_DELAYS = {"start_delay": 0.1, "join_delay": 0.1, "failover_delay": 0.5}
LEAKS: list[str] = []


def pytest_report_header() -> list[str]:
    return [f"chaos: CHAOS_SEED={SEED} CHAOS_TRIALS={TRIALS} CHAOS_PARALLEL={PARALLEL} (replay: CHAOS_SEED={SEED})"]


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorProcess]:
    """One simulator for the chaos session; fresh machines per trial; admin's password is secret."""
    with SimulatorProcess(machines=0, users=USERS, **SIM_DELAYS) as s:
        yield s


@pytest.fixture(scope="session")
def view(sim: SimulatorProcess) -> SimView:
    return SimView(sim.control)


@pytest.fixture
def clusters(kube_api: ApiClient, namespace: str, crd: None) -> Clusters:
    """The test's namespace with Secrets `manager-admin` (the session password) and `cluster-key`."""
    c = Clusters(kube_api, namespace)
    c.put_credentials(password=PASSWORD)
    c.put_key(key=KEY)
    return c


class Operators:
    """Operator processes of one test, at debug level, each with a metrics port; scanned at the end."""

    def __init__(self, testbed: Cluster, namespace: str, tmp: Path) -> None:
        self.testbed, self.namespace, self.tmp = testbed, namespace, tmp
        self.started: list[tuple[OperatorProcess, int]] = []

    def __call__(
        self, extra_args: Sequence[str] = (), env: dict[str, str] | None = None, start: bool = True
    ) -> OperatorProcess:
        port = free_port()
        op = OperatorProcess(
            self.testbed.kubeconfig,
            [self.namespace],
            resync_seconds=2.0,
            log_path=self.tmp / f"operator-{len(self.started) + 1}.log",
            extra_args=["--metrics-port", str(port), "--metrics-addr", "127.0.0.1", *extra_args],
            env=env,
        )
        self.started.append((op, port))
        return op.start() if start else op

    def metrics_texts(self) -> dict[str, str]:
        out = {}
        for i, (op, port) in enumerate(self.started):
            if op.alive:
                try:
                    out[f"metrics of operator {i + 1}"] = requests.get(f"http://127.0.0.1:{port}/", timeout=5).text
                except requests.RequestException:
                    pass
        return out

    def stop_all(self) -> None:
        for op, _ in self.started:  # SIGKILL: a graceful kopf shutdown costs seconds per test
            op.kill()

    def log_texts(self) -> dict[str, str]:
        return {f"log {op.log_path.name}": op.log_text() for op, _ in self.started}


def scan_namespace(api: ApiClient, namespace: str, ops: Operators | None) -> list[str]:
    texts = kube_texts(api, namespace)
    if ops is not None:
        texts.update(ops.metrics_texts())
        texts.update(ops.log_texts())
    leaks = find_secrets(texts)
    LEAKS.extend(f"{namespace} {leak}" for leak in leaks)
    return leaks


@pytest.fixture
def operators(
    testbed: Cluster, kube_api: ApiClient, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """operators(extra_args=(), env=None) starts one more operator watching the test's namespace.
    At the end: secrets scanned (logs, Events, status, annotations, metrics), logs shown on failure."""
    if testbed.kind:
        pytest.skip("kind: the chaos suite drives local operator processes")
    ops = Operators(testbed, namespace, tmp_path)
    yield ops
    leaks = scan_namespace(kube_api, namespace, ops)
    ops.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for op, _ in ops.started:
            print(op.digest(6000))
    assert not leaks, f"secrets leaked: {leaks}"


@pytest.fixture
def operator(operators: Callable[..., OperatorProcess]) -> OperatorProcess:
    """One operator watching the test's namespace, started."""
    return operators()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(f"chaos: seed {SEED} (replay with CHAOS_SEED={SEED}); secret leaks found: {len(LEAKS)}")
