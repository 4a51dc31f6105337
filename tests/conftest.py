"""Root fixtures: the Kubernetes control plane the tests run against, a client for it, and a fresh
namespace per test.

Nothing here is autouse: unit and simulator tests never start a control plane. The first test that
asks for `testbed` starts the local one (etcd, kube-apiserver, kube-controller-manager on loopback)
for the whole session. E2E_CLUSTER switches to an existing cluster: set it to anything but "local"
(for example `E2E_CLUSTER=kind`) and the cluster named by KUBECONFIG is used and nothing is started.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from clusterop_dev.harness import apply_crd
from clusterop_dev.testbed import Cluster, ExistingCluster, TestBed, local_mode


@pytest.fixture(scope="session")
def testbed(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The control plane for this session: a local TestBed with an audit log of writes, or the
    existing cluster of $KUBECONFIG when E2E_CLUSTER is set (`.kind` is then True)."""
    if not local_mode():
        kubeconfig = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        if not kubeconfig:
            pytest.fail(f"E2E_CLUSTER={os.environ['E2E_CLUSTER']} needs KUBECONFIG naming that cluster")
        yield ExistingCluster(kubeconfig)
        return
    bed = TestBed(audit=True)
    bed.start()
    try:
        yield bed
    finally:
        # Logs of a session with failures are worth keeping; stop() says where they are.
        bed.stop(keep=request.session.testsfailed > 0)


@pytest.fixture(scope="session")
def kube_api(testbed: Cluster) -> Iterator[ApiClient]:
    """A kubernetes ApiClient for the control plane, as its administrator."""
    with testbed.api_client() as api:
        yield api


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"{stem or 'test'}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(kube_api: ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards without waiting for it to go."""
    name = _namespace_name(request.node.name)
    core = client.CoreV1Api(kube_api)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"clusterop.test/owner": "pytest"}))
    )
    yield name
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as e:
        if e.status != 404:
            raise


@pytest.fixture(scope="session")
def crd(kube_api: ApiClient) -> None:
    """The ManagerCluster CRD from crds/, applied server-side and established."""
    apply_crd(kube_api)
