"""E2E fixtures: the simulator over real HTTP, the CRD on the control plane, and the operator as a
separate process watching only the test's namespace (so tests that kill it stay isolated)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from clusterop.simulator.harness import SimulatorProcess
from clusterop_dev.harness import Clusters, OperatorProcess, apply_crd
from clusterop_dev.testbed import Cluster


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorProcess]:
    """One simulator process for the session; every test takes fresh machines from it."""
    with SimulatorProcess(machines=0, start_delay=0.3, join_delay=0.3, failover_delay=1.0) as s:
        yield s


@pytest.fixture
def machines(sim: SimulatorProcess) -> Callable[[int], list[dict[str, Any]]]:
    """Fresh, uninitialized simulated managers: machines(3)."""
    return sim.add_machines


@pytest.fixture(scope="session")
def crd(kube_api: ApiClient) -> None:
    apply_crd(kube_api)


@pytest.fixture
def clusters(kube_api: ApiClient, namespace: str, crd: None) -> Clusters:
    """ManagerClusters of the test's namespace, with an admin credentials Secret and a key Secret."""
    c = Clusters(kube_api, namespace)
    c.put_credentials()
    c.key = c.put_key()  # type: ignore[attr-defined]
    return c


@pytest.fixture
def operator(
    testbed: Cluster, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    """The operator, started as users run it, watching the test's namespace; its log is printed
    when the test fails."""
    if testbed.kind:
        pytest.skip("kind: the operator runs in-cluster, this test drives a local operator process")
    op = OperatorProcess(testbed.kubeconfig, [namespace], resync_seconds=2.0, log_path=tmp_path / "operator.log")
    op.start()
    yield op
    op.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log ({op.log_path}) ---\n{op.log_text()[-8000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
