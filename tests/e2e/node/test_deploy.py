"""The operator as users deploy it, on a real node: `kubectl apply -k deploy/default` with only the
image set, and `helm install` of the chart. Each gives a running pod under enforced restricted pod
security, non-root, read-only root, with its own ServiceAccount token, probes passing, and the
memory limit enforced by the node (the container's cgroup, read on the host)."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from nodetools import (
    DEPLOYMENT,
    HELM,
    IMAGE,
    OPERATOR_NS,
    container_cgroup,
    deployment_args,
    helm,
    kubectl,
    read_int,
    restarts,
    the_leader_pod,
)  # fmt: skip

from cloudify_manager_sim.harness import SimulatorControl
from clusterop_dev.harness import REPO, Clusters, manager_cluster, node_specs

pytestmark = pytest.mark.e2e
EROFS = 30


def exec_in(pod: Any, *argv: str) -> str:
    return kubectl("-n", pod.metadata.namespace, "exec", pod.metadata.name, "-c", "operator", "--", *argv)


def assert_runs_as_users_deploy_it(core: client.CoreV1Api, pod: Any, limit_bytes: int) -> None:
    namespace = pod.metadata.namespace
    labels = core.read_namespace(namespace).metadata.labels or {}
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted"
    assert restarts(pod) == 0  # readiness passed, liveness never failed
    (container,) = pod.spec.containers
    assert pod.spec.security_context.run_as_non_root is True
    assert container.security_context.read_only_root_filesystem is True
    # What the node made of it: the container's processes, uid and memory limit, seen from the host.
    cgroup = container_cgroup(pod)
    assert read_int(cgroup / "memory.limit_in_bytes") == limit_bytes
    pids = (cgroup / "cgroup.procs").read_text().split()
    assert pids, f"no process in {cgroup}"
    uids = {Path(f"/proc/{p}/status").read_text().split("Uid:")[1].split()[0] for p in pids}
    assert uids == {"65532"}
    errno = exec_in(pod, "python", "-c", "import os\ntry: open('/probe', 'w')\nexcept OSError as e: print(e.errno)")
    assert errno.strip() == str(EROFS)
    # Its own ServiceAccount token, mounted by the node and accepted by the apiserver.
    token = exec_in(pod, "python", "-c", "print(open('/var/run/secrets/kubernetes.io/serviceaccount/token').read())")
    review = client.AuthenticationV1Api(core.api_client).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token.strip()))
    )
    assert review.status.authenticated
    assert review.status.user.username == f"system:serviceaccount:{namespace}:{pod.spec.service_account_name}"
    assert pod.spec.service_account_name != "default"


def test_deploy_default_with_only_the_image_set(
    core: client.CoreV1Api, restore_operator: None, sim: SimulatorControl, clusters: Clusters
) -> None:
    overlay = Path(tempfile.mkdtemp(prefix="overlay-", dir=REPO / ".testbed"))
    try:
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources: [{os.path.relpath(REPO / 'deploy' / 'default', overlay)}]\n"
            "images:\n  - name: ghcr.io/cloudify-cosmo/cloudify-cluster-operator\n"
            f"    newName: {IMAGE.rsplit(':', 1)[0]}\n    newTag: {IMAGE.rsplit(':', 1)[1]}\n"
        )
        kubectl("apply", "--server-side", "--force-conflicts", "-k", str(overlay))
    finally:
        shutil.rmtree(overlay)
    kubectl("-n", OPERATOR_NS, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=180s")
    assert not any(a.startswith("--resync-seconds") for a in deployment_args())  # deploy/default's own args
    pod = the_leader_pod(core)
    assert pod.spec.containers[0].image == IMAGE
    assert_runs_as_users_deploy_it(core, pod, 256 * 2**20)
    # And it works: a cluster of the in-cluster simulator, reached through its Service, forms.
    ms = sim.add_machines(1)
    clusters.create(manager_cluster("from-default", node_specs(ms)))
    assert clusters.wait_ready("from-default", timeout=90)["phase"] == "Ready"


def test_helm_install(core: client.CoreV1Api, namespace: str) -> None:
    assert os.access(HELM, os.X_OK), f"no helm at {HELM} (make helm)"
    release_ns = f"helm-op-{secrets.token_hex(3)}"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=release_ns, labels={"pod-security.kubernetes.io/enforce": "restricted"})
        )
    )
    repository, tag = IMAGE.rsplit(":", 1)
    try:
        done = helm(
            "install", "op", str(REPO / "charts" / "cloudify-cluster-operator"), "-n", release_ns,
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", f"watchNamespaces={{{namespace}}}", "--wait", "--timeout=180s",
        )  # fmt: skip
        assert "STATUS: deployed" in done
        pod = the_leader_pod(core, release_ns)
        assert pod.spec.containers[0].image == IMAGE
        assert_runs_as_users_deploy_it(core, pod, 256 * 2**20)
    finally:
        helm("uninstall", "op", "-n", release_ns, "--wait", "--timeout=120s", check=False)
        core.delete_namespace(release_ns)


def test_the_readme_sample_forms_in_the_simulators_namespace() -> None:
    """README "Run it in a cluster": deploy/samples addresses the simulator by its full Service name
    (a short one resolves in the operator pod's namespace, not the sample's); kubectl wait is how a
    user sees it Ready."""
    sim_ns = os.environ.get("E2E_SIM_NAMESPACE", "cloudify-manager-sim")
    kubectl("-n", sim_ns, "apply", "-k", "deploy/samples")
    try:
        kubectl("-n", sim_ns, "wait", "--for=condition=Ready", "managercluster/example", "--timeout=180s")
        status = kubectl("-n", sim_ns, "get", "managercluster", "example", "-o", "jsonpath={.status.nodeSummary}")
        assert status == "3/3"
    finally:
        kubectl("-n", sim_ns, "delete", "-k", "deploy/samples", "--wait=true")
