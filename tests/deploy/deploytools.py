"""What the tests of deploy/, the Helm chart and the image share: rendering (kustomize, helm),
server-side apply (dry run or real) against the control plane, and the renames that let one
rendering of deploy/ be applied into a test's own namespaces.

Tools come from the machine (kubectl for kustomize) or the tools cache that mk/ship.mk fills
(helm: `make helm`); a missing tool is built, not skipped.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient
from kubernetes.dynamic import DynamicClient

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "cloudify-cluster-operator"
TOOLS_BIN = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cloudify-cluster-operator" / "bin"
OPERATOR_NS = "cloudify-cluster-operator"  # where deploy/ puts the operator
WATCHED_NS = "cloudify"  # the namespace deploy/namespaced watches
FIELD_MANAGER = "clusterop-deploy-tests"
Obj = dict[str, Any]


def run(args: Sequence[str], *, cwd: Path = REPO, input_text: str | None = None) -> str:
    done = subprocess.run(list(args), cwd=cwd, input=input_text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}\n{done.stdout[-2000:]}")
    return done.stdout


def helm_binary() -> Path:
    """helm from the tools cache, built by `make helm` (go install, about a minute) if missing."""
    helm = Path(os.environ.get("HELM", TOOLS_BIN / "helm"))
    if not helm.exists():
        run(["make", "-s", "helm"])
    assert helm.exists(), f"`make helm` did not produce {helm}"
    return helm


def kustomize_command() -> list[str]:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    raise AssertionError("kustomize needs kubectl or kustomize on PATH")


def load_all(text: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize(path: str | Path) -> list[Obj]:
    return load_all(run([*kustomize_command(), str(REPO / path)]))


def helm_template(
    release: str = OPERATOR_NS, namespace: str = OPERATOR_NS, sets: Sequence[str] = (), *, include_crds: bool = False
) -> list[Obj]:
    args = [str(helm_binary()), "template", release, str(CHART), "--namespace", namespace]
    if include_crds:
        args.append("--include-crds")
    for s in sets:
        args += ["--set", s]
    return load_all(run(args))


def run_helm(*args: str, kubeconfig: str | Path | None = None) -> str:
    extra = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    return run([str(helm_binary()), *args, *extra])


def key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(obj["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))


def by_key(objs: Iterable[Obj]) -> dict[tuple[str, str, str], Obj]:
    return {key(o): o for o in objs}


def apply(api: ApiClient, objs: Iterable[Mapping[str, Any]], *, dry_run: bool = False) -> list[Obj]:
    """Server-side apply each object (dryRun=All when asked); the apiserver's answers."""
    dyn = DynamicClient(api)
    answers = []
    for obj in objs:
        resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": True}
        if dry_run:
            kwargs["dry_run"] = "All"
        answer = dyn.server_side_apply(resource, body=dict(obj), namespace=obj["metadata"].get("namespace"), **kwargs)
        answers.append(answer.to_dict())
    return answers


def relocate(objs: Iterable[Obj], *, operator_ns: str, watched_ns: str = WATCHED_NS, suffix: str = "") -> list[Obj]:
    """deploy/'s objects moved into a test's namespaces, cluster-scoped names made unique by a
    suffix (and every reference to them), so tests never share or clash over an object."""
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition"}
    out = []
    for original in objs:
        obj = copy.deepcopy(original)
        meta = obj["metadata"]
        if meta.get("namespace") == OPERATOR_NS:
            meta["namespace"] = operator_ns
        elif meta.get("namespace") == WATCHED_NS:
            meta["namespace"] = watched_ns
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding") and suffix:
            meta["name"] += suffix
        if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            if obj["roleRef"]["kind"] == "ClusterRole" and suffix:
                obj["roleRef"]["name"] += suffix
            for subject in obj.get("subjects") or []:
                if subject.get("namespace") == OPERATOR_NS:
                    subject["namespace"] = operator_ns
        if obj["kind"] == "Namespace" and meta["name"] == OPERATOR_NS:
            meta["name"] = operator_ns
        if obj["kind"] == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                for env in container.get("env") or []:
                    if env.get("value") == WATCHED_NS:
                        env["value"] = watched_ns
        assert obj["kind"] not in cluster_scoped or "namespace" not in meta
        out.append(obj)
    return out


def container(objs: Iterable[Obj], name: str = "operator") -> Obj:
    (deployment,) = [o for o in objs if o["kind"] == "Deployment"]
    (found,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return dict(found)


# -- Argo CD: the argocd-cm entries, generated from the Lua files in deploy/argocd -------------

ARGOCD = REPO / "deploy" / "argocd"


class _Literal(str):
    pass


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


def argocd_cm_text() -> str:
    """deploy/argocd/argocd-cm.yaml: the health check and the actions as argocd-cm keys."""
    dumper = type("LiteralDumper", (yaml.SafeDumper,), {})
    dumper.add_representer(_Literal, _literal)
    actions = {
        "discovery.lua": _Literal((ARGOCD / "actions" / "discovery.lua").read_text()),
        "definitions": [
            {"name": name, "action.lua": _Literal((ARGOCD / "actions" / name / "action.lua").read_text())}
            for name in ("suspend", "resume")
        ],
    }
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-cm",
            "namespace": "argocd",
            "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
        },
        "data": {
            "resource.customizations.health.cloudify.co_ManagerCluster": _Literal((ARGOCD / "health.lua").read_text()),
            "resource.customizations.actions.cloudify.co_ManagerCluster": _Literal(
                yaml.dump(actions, Dumper=dumper, sort_keys=False)
            ),
        },
    }
    header = (
        "# Generated from deploy/argocd/{health.lua,actions/} by `make manifests`; do not edit.\n"
        "# Merge into Argo CD's argocd-cm without touching its other keys (see docs/argocd.md):\n"
        "#   kubectl apply --server-side --field-manager=cloudify-cluster-operator -f deploy/argocd/argocd-cm.yaml\n"
    )
    return header + yaml.dump(cm, Dumper=dumper, sort_keys=False)


if __name__ == "__main__":
    (ARGOCD / "argocd-cm.yaml").write_text(argocd_cm_text())
