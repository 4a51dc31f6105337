"""RBAC proven on the RBAC-enforcing local apiserver: the operator, holding only a token of
deploy/'s ServiceAccount with deploy/namespaced's rules, forms a cluster; the same token is
refused what the operator does not need."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster, node_specs
from clusterop_dev.testbed import Cluster

from .deploytools import apply, kustomize, relocate

pytestmark = pytest.mark.e2e
SA = "cloudify-cluster-operator"
RBAC_GROUP = "rbac.authorization.k8s.io"
Machines = Callable[[int], list[dict[str, Any]]]


def _fresh_namespace(core: client.CoreV1Api, stem: str) -> str:
    name = f"{stem}-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture
def granted(kube_api: ApiClient, namespace: str, crd: None) -> Iterator[dict[str, str]]:
    """deploy/namespaced's ServiceAccount and RBAC (no Deployment: this apiserver has no kubelet)
    applied for real, with the operator in its own fresh namespace and `namespace` watched."""
    core = client.CoreV1Api(kube_api)
    operator_ns = _fresh_namespace(core, "rbac-operator")
    other_ns = _fresh_namespace(core, "rbac-other")
    suffix = "-" + operator_ns
    objs = [
        o
        for o in relocate(kustomize("deploy/namespaced"), operator_ns=operator_ns, watched_ns=namespace, suffix=suffix)
        if o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    apply(kube_api, objs)
    yield {"operator_ns": operator_ns, "other_ns": other_ns, "suffix": suffix}
    rbac = client.RbacAuthorizationV1Api(kube_api)
    for o in objs:
        name = o["metadata"]["name"]
        if o["kind"] == "ClusterRole":
            rbac.delete_cluster_role(name)
        elif o["kind"] == "ClusterRoleBinding":
            rbac.delete_cluster_role_binding(name)
    for ns in (operator_ns, other_ns):
        core.delete_namespace(ns, propagation_policy="Background")


@pytest.fixture
def token(testbed: Cluster, granted: dict[str, str]) -> str:
    return testbed.create_token(granted["operator_ns"], SA, 3600)


def test_operator_with_the_service_account_token_forms_a_cluster(
    testbed: Cluster,
    namespace: str,
    granted: dict[str, str],
    token: str,
    machines: Machines,
    kube_api: ApiClient,
    tmp_path: Path,
):
    kubeconfig = testbed.kubeconfig_for_token(token, tmp_path / "sa.kubeconfig")
    clusters = Clusters(kube_api, namespace)
    clusters.put_credentials()
    clusters.put_key()
    op = OperatorProcess(
        kubeconfig,
        [namespace],
        resync_seconds=2.0,
        log_path=tmp_path / "operator.log",
        # As deployed: leader election on the Lease in the operator's own namespace.
        extra_args=["--leader-elect", "--leader-elect-lease-namespace", granted["operator_ns"]],
    )
    with op:
        clusters.create(manager_cluster("rbac", node_specs(machines(3))))
        try:
            st = clusters.wait_ready("rbac", timeout=60)
        except AssertionError:
            print(op.digest(6000))
            raise
        # A generated key Secret (create) and events (create) work with these rights too.
        clusters.create(manager_cluster("generated", node_specs(machines(1)), key_secret="gen-key", generate_key=True))
        clusters.wait_ready("generated", timeout=60)
    assert st["nodeSummary"] == "3/3"
    lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(SA, granted["operator_ns"])
    assert lease.spec.holder_identity == "", "the lease was not released on SIGTERM"
    assert lease.spec.lease_transitions == 0 and lease.spec.acquire_time is not None
    assert "encryptionKey" in (client.CoreV1Api(kube_api).read_namespaced_secret("gen-key", namespace).data or {})
    clusters.wait_reasons("rbac", "Bootstrapping", "Joining", "Ready")
    log = op.log_text()
    forbidden = [line for line in log.splitlines() if FORBIDDEN.search(_message(line))]
    assert not forbidden, "\n".join(forbidden[:20])


# A 403 status or "Forbidden" in a log line's message: not the digits 403 inside a port (:40357),
# a number (1.403) or the milliseconds of the line's own timestamp ("16:01:48,403").
FORBIDDEN = re.compile(r"(?<![\d.,:])403(?![\d.])|orbidden")
_TIMESTAMP = re.compile(r"^\[[^\]]*\]\s*")


def _message(line: str) -> str:
    return _TIMESTAMP.sub("", line)


def _deployment() -> dict[str, Any]:
    labels = {"app": "x"}
    return {
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "x", "image": "x"}]}},
        },
    }


def _refused(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ApiException as e:
        return e.status == 403
    return False


def test_the_service_account_is_refused_what_it_does_not_need(
    testbed: Cluster, namespace: str, granted: dict[str, str], token: str, kube_api: ApiClient
):
    Clusters(kube_api, namespace).put_credentials()
    Clusters(kube_api, granted["other_ns"]).put_credentials()
    other = granted["other_ns"]
    client.CoordinationV1Api(kube_api).create_namespaced_lease(
        granted["operator_ns"], {"metadata": {"name": "other-lease"}, "spec": {"holderIdentity": "x"}}
    )
    with testbed.token_client(token) as api:
        core = client.CoreV1Api(api)
        ext = client.ApiextensionsV1Api(api)
        rbac = client.RbacAuthorizationV1Api(api)
        apps = client.AppsV1Api(api)
        custom = client.CustomObjectsApi(api)
        coordination = client.CoordinationV1Api(api)
        # Its own Lease: create, get and update, and nothing more.
        created = coordination.create_namespaced_lease(
            granted["operator_ns"], {"metadata": {"name": SA}, "spec": {"holderIdentity": "test"}}
        )
        created.spec.holder_identity = "test-2"
        coordination.replace_namespaced_lease(SA, granted["operator_ns"], created)
        assert coordination.read_namespaced_lease(SA, granted["operator_ns"]).spec.holder_identity == "test-2"
        # What it needs, in the watched namespace: allowed.
        assert core.read_namespaced_secret("manager-admin", namespace).metadata.name == "manager-admin"
        core.list_namespaced_secret(namespace)
        custom.list_namespaced_custom_object("cloudify.co", "v1alpha1", namespace, "managerclusters")
        ext.list_custom_resource_definition()
        core.list_namespace()  # kopf's namespaced mode lists namespaces (names only)
        refusals = {
            "read a Secret of another namespace": lambda: core.read_namespaced_secret("manager-admin", other),
            "list Secrets of another namespace": lambda: core.list_namespaced_secret(other),
            "list Secrets cluster-wide": lambda: core.list_secret_for_all_namespaces(),
            "list ManagerClusters of another namespace": lambda: custom.list_namespaced_custom_object(
                "cloudify.co", "v1alpha1", other, "managerclusters"
            ),
            "delete a Secret it reads": lambda: core.delete_namespaced_secret("manager-admin", namespace),
            "update a Secret it reads": lambda: core.patch_namespaced_secret(
                "manager-admin", namespace, {"metadata": {"labels": {"x": "y"}}}
            ),
            "delete a ManagerCluster": lambda: custom.delete_namespaced_custom_object(
                "cloudify.co", "v1alpha1", namespace, "managerclusters", "any"
            ),
            "change the CRD": lambda: ext.patch_custom_resource_definition(
                "managerclusters.cloudify.co", {"metadata": {"labels": {"x": "y"}}}
            ),
            "delete the CRD": lambda: ext.delete_custom_resource_definition("managerclusters.cloudify.co"),
            "delete a namespace": lambda: core.delete_namespace(other),
            "read a namespace's details": lambda: core.read_namespace(other),
            "list pods": lambda: core.list_namespaced_pod(namespace),
            "create a Deployment": lambda: apps.create_namespaced_deployment(namespace, _deployment()),
            "grant itself a ClusterRole": lambda: rbac.create_cluster_role_binding(
                {
                    "metadata": {"name": "escalate" + granted["suffix"]},
                    "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": granted["operator_ns"]}],
                }
            ),
            "read its own token's Secrets in its namespace": lambda: core.list_namespaced_secret(
                granted["operator_ns"]
            ),
            "read another Lease of its namespace": lambda: coordination.read_namespaced_lease(
                "other-lease", granted["operator_ns"]
            ),
            "update another Lease of its namespace": lambda: coordination.patch_namespaced_lease(
                "other-lease", granted["operator_ns"], {"spec": {"holderIdentity": "me"}}
            ),
            "delete its Lease": lambda: coordination.delete_namespaced_lease(SA, granted["operator_ns"]),
            "list leases": lambda: coordination.list_namespaced_lease(granted["operator_ns"]),
            "create a Lease in a watched namespace": lambda: coordination.create_namespaced_lease(
                namespace, {"metadata": {"name": SA}, "spec": {"holderIdentity": "me"}}
            ),
        }
        allowed = [what for what, call in refusals.items() if not _refused(call)]
    assert not allowed, f"the ServiceAccount may: {allowed}"
