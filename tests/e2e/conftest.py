"""E2E fixtures: the simulator over real HTTP, the CRD on the control plane, and the operator as a
separate process watching only the test's namespace (so tests that kill it stay isolated).

One suite, a switch: E2E_CLUSTER=kind (make e2e-kind) or E2E_CLUSTER=node (make e2e-node, the
local real node) runs it against the operator and the simulator as pods instead; tests/e2e/node
adds what only a real node can show and is collected in the node mode only."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from cloudify_manager_sim.harness import SimulatorControl, SimulatorProcess
from clusterop_dev.harness import Clusters, OperatorProcess
from clusterop_dev.testbed import Cluster


@pytest.fixture(scope="session")
def sim(testbed: Cluster) -> Iterator[SimulatorControl]:
    """One simulator for the session; every test takes fresh machines from it. In-cluster (kind, the
    local node) it is the simulator pod (deploy/simulator), reached at E2E_SIM_CONTROL (a port-forward)."""
    if testbed.kind:
        control = os.environ.get("E2E_SIM_CONTROL")
        if not control:
            pytest.fail("E2E_CLUSTER is set: E2E_SIM_CONTROL must name the in-cluster simulator's control API")
        with SimulatorControl(control) as remote:
            remote.set_delays(start_delay=0.3, join_delay=0.3, failover_delay=1.0)
            yield remote
        return
    with SimulatorProcess(machines=0, start_delay=0.3, join_delay=0.3, failover_delay=1.0) as s:
        yield s


@pytest.fixture
def machines(sim: SimulatorProcess) -> Callable[[int], list[dict[str, Any]]]:
    """Fresh, uninitialized simulated managers: machines(3)."""
    return sim.add_machines


@pytest.fixture
def clusters(kube_api: ApiClient, namespace: str, crd: None) -> Clusters:
    """ManagerClusters of the test's namespace, with an admin credentials Secret and a key Secret."""
    c = Clusters(kube_api, namespace)
    c.put_credentials()
    c.key = c.put_key()  # type: ignore[attr-defined]
    return c


class InClusterOperator:
    """On kind the operator runs in-cluster (deployed by `make e2e-kind`, all namespaces); its log
    is the pod's log. It cannot be killed or restarted from a test."""

    local = False

    def __init__(self, api: ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = os.environ.get("E2E_OPERATOR_NAMESPACE", "cloudify-cluster-operator")

    def log_text(self) -> str:
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector="app.kubernetes.io/name=cloudify-cluster-operator"
        ).items
        return "\n".join(self.core.read_namespaced_pod_log(p.metadata.name, self.namespace) for p in pods)


@pytest.fixture
def operator(
    testbed: Cluster, kube_api: ApiClient, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess | InClusterOperator]:
    """The operator, started as users run it, watching the test's namespace; its log is printed
    when the test fails. On kind: the in-cluster operator."""
    if testbed.kind:
        yield InClusterOperator(kube_api)
        return
    op = OperatorProcess(testbed.kubeconfig, [namespace], resync_seconds=2.0, log_path=tmp_path / "operator.log")
    op.start()
    yield op
    op.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(op.digest())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def local_operator(operator: OperatorProcess | InClusterOperator) -> OperatorProcess:
    """For tests that kill, restart or reconfigure the operator process."""
    if not isinstance(operator, OperatorProcess):
        where = os.environ.get("E2E_CLUSTER", "kind")
        pytest.skip(f"{where}: the operator runs in-cluster (tests/e2e/node kills and restarts its pod instead)")
    return operator
