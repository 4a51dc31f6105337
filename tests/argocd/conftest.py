"""Fixtures of the Argo CD e2e suite: Argo CD's redis, repo-server, application-controller and
argocd-server as host processes on loopback against the control plane (the local node's, or the
plain local one), a git repository holding what deploy/argocd/app renders, the simulator, and the
Application that syncs it. The mode (operator as pods on the node, or as a host process) is decided
once, in gitops.IN_CLUSTER, and said in one line of pytest's header."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from cloudify_manager_sim.harness import SimulatorControl, SimulatorProcess
from clusterop_dev.testbed import Cluster
from clusterop_dev.testkit import wait_for

from .argocdtools import ARGOCD_CM, ARGOCD_NAMESPACE, ArgoCD, argocd_binary, run
from .gitops import IN_CLUSTER, GitOps, mode_line


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "argocd: Argo CD (make argocd) syncs the operator and ManagerClusters (tests/argocd)"
    )


def pytest_report_header(config: pytest.Config) -> str:
    return mode_line()


def _kubectl(testbed: Cluster, *args: str) -> str:
    return run(["kubectl", "--kubeconfig", str(testbed.kubeconfig), *args])


@pytest.fixture(scope="module")
def argocd(testbed: Cluster, kube_api: ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoCD]:
    """Argo CD installed as docs/argocd.md says (its CRDs, namespace `argocd`, our argocd-cm keys
    merged by a server-side apply), its components running as host processes; stopped by PID."""
    if testbed.kind and not IN_CLUSTER:
        pytest.skip("the Argo CD suite runs Argo CD's components on the host against the local control plane or node")
    binary = argocd_binary()
    core = client.CoreV1Api(kube_api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ARGOCD_NAMESPACE)))
    except ApiException as e:
        if e.status != 409:
            raise
    _kubectl(testbed, "apply", "--server-side", "--force-conflicts", "-f", str(binary.parent / "crds"))
    ext = client.ApiextensionsV1Api(kube_api)

    def established() -> bool:
        crds = [ext.read_custom_resource_definition(f"{n}.argoproj.io") for n in ("applications", "appprojects")]
        return all(
            any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])) for crd in crds
        )

    wait_for(established, timeout=60, message="Argo CD's CRDs to be established")
    # What Argo CD's install manifests hold besides the CRDs: an empty argocd-secret (argocd-server
    # fills in its signing key at start) and argocd-cm; then our keys, merged as docs/argocd.md says.
    labels = {"app.kubernetes.io/name": "argocd-secret", "app.kubernetes.io/part-of": "argocd"}
    try:
        core.create_namespaced_secret(
            ARGOCD_NAMESPACE, client.V1Secret(metadata=client.V1ObjectMeta(name="argocd-secret", labels=labels))
        )
    except ApiException as e:
        if e.status != 409:
            raise
    _kubectl(testbed, "apply", "--server-side", "--field-manager=cloudify-cluster-operator", "-f", str(ARGOCD_CM))
    stack = ArgoCD(binary, testbed.kubeconfig, tmp_path_factory.mktemp("argocd"), app_resync_seconds=5)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        try:
            core.delete_namespace(ARGOCD_NAMESPACE, propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorControl]:
    """On the node, the simulator pod (deploy/simulator) through E2E_SIM_CONTROL, a port-forward
    hack/node/e2e.sh opens; elsewhere a simulator process."""
    delays = {"start_delay": 0.3, "join_delay": 0.3, "failover_delay": 1.0}
    if not IN_CLUSTER:
        with SimulatorProcess(machines=0, **delays) as s:
            yield s
        return
    control = os.environ.get("E2E_SIM_CONTROL")
    if not control:
        pytest.fail("E2E_CLUSTER=node: E2E_SIM_CONTROL must name the simulator pod's control API")
    with SimulatorControl(control) as remote:
        remote.set_delays(**delays)
        yield remote


@pytest.fixture(scope="module")
def gitops(
    testbed: Cluster,
    kube_api: ApiClient,
    argocd: ArgoCD,
    sim: SimulatorControl,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GitOps]:
    """One Application for the module (the CRD and the cluster-wide RBAC it syncs can have only one
    owner), synced from a fresh git repository; the tests run in order on it."""
    g = GitOps(testbed, kube_api, argocd, sim, tmp_path_factory.mktemp("gitops"))
    try:
        yield g
    finally:
        g.teardown()
