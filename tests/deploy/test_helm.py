"""The Helm chart: lint, the same objects as deploy/ (one source of truth checked both ways),
server-side dry runs of its renderings, and a real install and uninstall on the local apiserver
(no kubelet there: the objects are checked, pods never run)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from clusterop_dev.testbed import Cluster
from clusterop_dev.testkit import wait_for

from .deploytools import (
    CHART,
    WATCHED_NS,
    Obj,
    apply,
    by_key,
    helm_template,
    kustomize,
    relocate,
    run,
    run_helm,
)

HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/version", "app.kubernetes.io/managed-by")


def _helm_normalized(objs: list[Obj]) -> list[Obj]:
    for o in objs:
        labels = o["metadata"].get("labels") or {}
        for k in HELM_ONLY_LABELS:
            labels.pop(k, None)
    return objs


def _kustomize_normalized(objs: list[Obj]) -> list[Obj]:
    """deploy/ less what Helm does not own (the Namespace: `helm install --create-namespace`), with
    $(VAR) references in args expanded as the kubelet does."""
    out = [o for o in objs if o["kind"] not in ("Namespace", "CustomResourceDefinition")]
    for o in out:
        if o["kind"] != "Deployment":
            continue
        for c in o["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
            c["args"] = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in c["args"]]  # noqa: B023
            c["env"] = [e for e in c.get("env", []) if "value" not in e]
    return out


def test_lint(helm: Path):
    run_helm("lint", "--strict", str(CHART))
    run_helm("lint", "--strict", str(CHART), "--set", f"watchNamespaces={{{WATCHED_NS}}}")


@pytest.mark.parametrize(
    ("overlay", "sets"),
    [("all-namespaces", []), ("namespaced", [f"watchNamespaces={{{WATCHED_NS}}}"])],
)
def test_chart_defaults_render_what_deploy_renders(helm: Path, overlay: str, sets: list[str]):
    """Same kinds, names, namespaces, rules, bindings, Deployment and Service, field for field."""
    from_helm = by_key(_helm_normalized(helm_template(sets=sets)))
    from_kustomize = by_key(_kustomize_normalized(kustomize(f"deploy/{overlay}")))
    assert sorted(from_helm) == sorted(from_kustomize)
    for k, obj in from_kustomize.items():
        assert from_helm[k] == obj, f"{k} differs between the chart and deploy/{overlay}"


def test_chart_ships_the_crd(helm: Path):
    crds = [o for o in helm_template(include_crds=True) if o["kind"] == "CustomResourceDefinition"]
    assert [c["metadata"]["name"] for c in crds] == ["managerclusters.cloudify.co"]


@pytest.mark.parametrize(
    "sets",
    [
        [],
        [f"watchNamespaces={{{WATCHED_NS}}}"],
        [f"watchNamespaces={{{WATCHED_NS}}}", "peering=cloudify", "watchSecrets=off", "resyncSeconds=10"],
        ["watchSecrets=on", "metrics.enabled=false", "image.digest=sha256:" + "0" * 64, "logFormat=text"],
    ],
    ids=["defaults", "namespaced", "namespaced-peering", "cluster-secret-watch"],
)
def test_renderings_pass_a_server_side_dry_run(
    helm: Path, sets: list[str], kube_api: ApiClient, operator_namespace: str, namespace: str
):
    objs = relocate(helm_template(sets=sets), operator_ns=operator_namespace, watched_ns=namespace)
    assert objs
    apply(kube_api, objs, dry_run=True)


def _rendered_args(sets: list[str]) -> list[str]:
    (deployment,) = [o for o in helm_template(sets=sets) if o["kind"] == "Deployment"]
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_values_reach_the_operator_flags(helm: Path):
    args = _rendered_args(["watchNamespaces={a,b}", "peering=p", "resyncSeconds=10", "watchSecrets=off"])
    assert args[-2:] == ["--namespace=a", "--namespace=b"]
    assert {"--peering=p", "--resync-seconds=10", "--watch-secrets=off"} <= set(args)
    assert "--metrics-port=0" in _rendered_args(["metrics.enabled=false"])


def test_shards_reach_the_operator_and_its_role(helm: Path):
    assert not any(a.startswith("--shards") for a in _rendered_args([]))
    assert "--shards=3" in _rendered_args(["shards=3", "replicas=4"])
    (role,) = [
        o
        for o in helm_template(sets=["shards=3", "replicas=4"])
        if o["kind"] == "Role" and o["metadata"]["name"].endswith("leader-election")
    ]
    assert {"get", "list", "update"} <= {v for r in role["rules"] if "resourceNames" not in r for v in r["verbs"]}
    refused = [
        (["shards=3", "replicas=2"], "replicas must be at least shards"),
        (["shards=2", "leaderElection.enabled=false", "replicas=2"], "needs leaderElection"),
    ]
    for sets, why in refused:
        with pytest.raises(AssertionError, match=why):
            run([str(helm), "template", "x", str(CHART), *[f"--set={s}" for s in sets]])


@pytest.mark.parametrize(
    "bad",
    ["watchSecrets=sometimes", "shards=0", "logLevel=verbose", "image.digest=latest", "unknownKey=1", "metrics.port=0"],
)
def test_the_values_schema_refuses(helm: Path, bad: str):
    with pytest.raises(AssertionError, match="values don't meet the specifications of the schema"):
        run([str(helm), "template", "x", str(CHART), "--set", bad])


def test_install_and_uninstall(helm: Path, testbed: Cluster, kube_api: ApiClient, namespace: str, crd: None):
    release = f"cco-{secrets.token_hex(3)}"
    fullname = f"{release}-cloudify-cluster-operator"
    run_helm("install", release, str(CHART), "--namespace", namespace, kubeconfig=testbed.kubeconfig)
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    rbac = client.RbacAuthorizationV1Api(kube_api)
    readers: dict[str, Any] = {
        "Deployment": lambda: apps.read_namespaced_deployment(fullname, namespace),
        "ServiceAccount": lambda: core.read_namespaced_service_account(fullname, namespace),
        "Service": lambda: core.read_namespaced_service(f"{fullname}-metrics", namespace),
        "ClusterRole": lambda: rbac.read_cluster_role(fullname),
        "ClusterRole crd-observer": lambda: rbac.read_cluster_role(f"{fullname}-crd-observer"),
        "ClusterRoleBinding": lambda: rbac.read_cluster_role_binding(fullname),
        "ClusterRoleBinding crd-observer": lambda: rbac.read_cluster_role_binding(f"{fullname}-crd-observer"),
    }
    try:
        deployment = readers["Deployment"]()
        assert deployment.spec.template.spec.service_account_name == fullname
        assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "Helm"
        for read in readers.values():
            read()
        binding = readers["ClusterRoleBinding"]()
        assert [(s.name, s.namespace) for s in binding.subjects] == [(fullname, namespace)]
        assert release in run_helm("list", "--namespace", namespace, "--short", kubeconfig=testbed.kubeconfig)
    finally:
        run_helm("uninstall", release, "--namespace", namespace, "--wait", kubeconfig=testbed.kubeconfig)

    def gone(read: Any) -> bool:
        try:
            read()
        except ApiException as e:
            return e.status == 404
        return False

    for what, read in readers.items():
        wait_for(lambda read=read: gone(read), timeout=30, message=f"{what} to be deleted")  # type: ignore[misc]
    # Helm never deletes crds/: ManagerClusters (and the operator's finalizers) stay safe.
    client.ApiextensionsV1Api(kube_api).read_custom_resource_definition("managerclusters.cloudify.co")
