"""deploy/ as users apply it: every kustomization renders, passes a server-side dry run on the
local apiserver, keeps the CRD identical to crds/, and gives the operator a restricted pod."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from clusterop_dev.testbed import Cluster

from .deploytools import CHART, OPERATOR_NS, REPO, WATCHED_NS, apply, by_key, container, kustomize, relocate

KUSTOMIZATIONS = [
    *(f"deploy/{k}" for k in ("crd", "rbac", "manager", "all-namespaces", "namespaced", "default", "sharded")),
    "deploy/samples",
    "deploy/simulator",
    "deploy/argocd/app",
    "hack/kind",
]
CRD_SOURCE = REPO / "crds" / "cloudify.co_managerclusters.yaml"


@pytest.mark.parametrize("copy", [REPO / "deploy" / "crd", CHART / "crds"], ids=["deploy-crd", "chart-crds"])
def test_crd_copies_are_the_source(copy: Path):
    assert (copy / CRD_SOURCE.name).read_bytes() == CRD_SOURCE.read_bytes(), "run `make manifests`"
    assert [p.name for p in copy.glob("*.yaml") if p.name != "kustomization.yaml"] == [CRD_SOURCE.name]


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_every_kustomization_passes_a_server_side_dry_run(
    path: str, kube_api: ApiClient, crd: None, operator_namespace: str, namespace: str
):
    objs = kustomize(path)
    assert objs
    if path in ("deploy/samples", "deploy/simulator"):  # namespace-less: applied into the user's namespace
        for o in objs:
            o["metadata"]["namespace"] = namespace
    objs = relocate(objs, operator_ns=operator_namespace, watched_ns=namespace)
    answers = apply(kube_api, objs, dry_run=True)
    assert [(a["kind"], a["metadata"]["name"]) for a in answers] == [(o["kind"], o["metadata"]["name"]) for o in objs]


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_kubectl_apply_k_deploy_default(testbed: Cluster, operator_namespace: str):
    """The documented command, as written (server-side dry run: nothing is left behind)."""
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(testbed.kubeconfig), "apply", "-k", "deploy/default", "--dry-run=server"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "deployment.apps/cloudify-cluster-operator created (server dry run)" in done.stdout
    assert "customresourcedefinition.apiextensions.k8s.io/managerclusters.cloudify.co" in done.stdout


def test_default_is_crd_plus_all_namespaces():
    default = by_key(kustomize("deploy/default"))
    assert default == by_key(kustomize("deploy/crd") + kustomize("deploy/all-namespaces"))


def test_deployment_shape():
    objs = kustomize("deploy/all-namespaces")
    (deployment,) = [o for o in objs if o["kind"] == "Deployment"]
    spec = deployment["spec"]
    # Two replicas under Lease leader election; a rolling update hands the Lease over on SIGTERM.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert "--leader-elect" in container(objs)["args"]
    (pdb,) = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["selector"] == spec["selector"] and pdb["spec"]["maxUnavailable"] == 1
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(objs)
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"healthz": 8080, "metrics": 9090}
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"] and "--metrics-port=9090" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9090"
    assert c["args"][-1] == "--all-namespaces"
    (service,) = [o for o in objs if o["kind"] == "Service"]
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_the_operator_pod_is_admitted_under_the_restricted_pod_security_standard(kube_api: ApiClient, namespace: str):
    """The Deployment's pod template, created (dry run) as a Pod in a namespace that enforces
    `restricted`: PodSecurity admission refuses any pod that misses one of its rules."""
    core = client.CoreV1Api(kube_api)
    core.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    (deployment,) = [o for o in kustomize("deploy/all-namespaces") if o["kind"] == "Deployment"]
    template: dict[str, Any] = deployment["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "operator", "namespace": namespace,
           **template["metadata"]}, "spec": {**template["spec"], "serviceAccountName": "default"}}  # fmt: skip
    apply(kube_api, [pod], dry_run=True)
    # The same check refuses a pod that runs as root: proof that it is enforced here.
    bad = yaml.safe_load(yaml.safe_dump(pod))
    bad["spec"]["securityContext"] = {"runAsUser": 0}
    with pytest.raises(ApiException) as refused:
        apply(kube_api, [bad], dry_run=True)
    assert refused.value.status == 403 and "restricted" in str(refused.value.body)


def test_namespaced_overlay_follows_the_rolebinding_namespace(tmp_path: Path):
    """Changing the watched namespace in one file moves the RBAC and the --namespace flag."""
    shutil.copytree(REPO / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("simulator", "argocd"))
    rbac = tmp_path / "deploy" / "namespaced" / "watched_namespace_rbac.yaml"
    rbac.write_text(rbac.read_text().replace(f"namespace: {WATCHED_NS}\n", "namespace: team-a\n"))
    objs = kustomize(tmp_path / "deploy" / "namespaced")
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objs)["env"]}
    assert env == {"WATCH_NAMESPACE": "team-a", "POD_ID": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert "--namespace=$(WATCH_NAMESPACE)" in container(objs)["args"]
    bound = {
        (o["kind"], o["metadata"]["namespace"])
        for o in objs
        if o["kind"] in ("Role", "RoleBinding") and not o["metadata"]["name"].endswith("-leader-election")
    }
    assert bound == {("Role", "team-a"), ("RoleBinding", "team-a")}
    # The leader-election Lease stays in the operator's own namespace.
    lease_rbac = {
        (o["kind"], o["metadata"]["namespace"]) for o in objs if o["metadata"]["name"].endswith("-leader-election")
    }
    assert lease_rbac == {("Role", OPERATOR_NS), ("RoleBinding", OPERATOR_NS)}


def test_namespaced_overlay_binds_nothing_cluster_wide_but_discovery():
    objs = kustomize("deploy/namespaced")
    bindings = {b["roleRef"]["name"] for b in objs if b["kind"] == "ClusterRoleBinding"}
    assert bindings == {"cloudify-cluster-operator-crd-observer", "cloudify-cluster-operator-namespace-observer"}
    rules = [r for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] in bindings for r in o["rules"]]
    assert sorted(rules, key=str) == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    ]
    assert all(o["metadata"].get("namespace") in (None, OPERATOR_NS, WATCHED_NS) for o in objs)


def test_samples_reference_their_secrets():
    objs = by_key(kustomize("deploy/samples"))
    cluster = objs[("ManagerCluster", "", "example")]
    secrets = {name for kind, _, name in objs if kind == "Secret"}
    spec = cluster["spec"]
    assert {spec["credentialsSecretRef"]["name"], spec["encryptionKeySecretRef"]["name"]} == secrets
    key_secret = objs[("Secret", "", spec["encryptionKeySecretRef"]["name"])]
    import base64

    assert len(base64.b64decode(key_secret["stringData"][spec["encryptionKeySecretRef"]["key"]])) == 16
