"""The GitOps set-up of docs/argocd.md: a git repository holding what deploy/argocd/app renders
(sync waves and all), the Application of deploy/argocd/application.yaml pointed at it, and what the
tests judge by: Argo CD's own Application status, the ManagerCluster, and the simulated managers.

Two modes, decided once (`IN_CLUSTER`):
- on the real node (E2E_CLUSTER=node, set by hack/node/e2e.sh: make e2e-argocd, make test) the
  repository holds all of deploy/argocd/app, the operator's Deployment (2 replicas, leader
  election) and PodDisruptionBudget included, with the dev image loaded into the node set by a
  kustomize `images:` overlay: Argo CD syncs the operator and it runs as pods; the simulator is the
  pod of deploy/simulator, reached through a port-forward;
- elsewhere (no node) the Deployment and its PodDisruptionBudget are left out of the repository
  and the operator runs as a host process, as the Deployment runs it, with the token of the
  ServiceAccount that Argo CD synced (so the synced RBAC is what it runs with).
"""

from __future__ import annotations

import copy
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from cloudify_manager_sim.harness import SimulatorControl
from clusterop_dev.harness import Clusters, OperatorProcess, node_specs
from clusterop_dev.testbed import Cluster
from clusterop_dev.testkit import Timeout, wait_for
from deploy.deploytools import WATCHED_NS, kustomize, load_all, relocate

from .argocdtools import ARGOCD_NAMESPACE, REPO, ArgoCD, GitRepo

Obj = dict[str, Any]
T = TypeVar("T")
WRITES = ("POST", "PUT", "PATCH", "DELETE")
APP = ("argoproj.io", "v1alpha1", "applications")
CLUSTER_FILE = "app/managercluster.yaml"
# What exists only for the operator's pod, left out of the repository on a bed with no node.
POD_ONLY = ("Deployment", "PodDisruptionBudget")
OPERATOR = "cloudify-cluster-operator"  # the Deployment, its ServiceAccount and its Lease
# The one decision of the suite's mode: hack/node/e2e.sh sets E2E_CLUSTER=node once the node runs.
IN_CLUSTER = os.environ.get("E2E_CLUSTER") == "node"
IMAGE = os.environ.get("E2E_IMAGE", "cloudify-cluster-operator:dev")


def mode_line() -> str:
    """The one line that says how this run runs the operator."""
    if IN_CLUSTER:
        return f"tests/argocd: on the real node: the operator runs as pods ({IMAGE}) synced by Argo CD"
    why = os.environ.get("ARGOCD_NO_NODE") or "E2E_CLUSTER is not node; make e2e-argocd brings a node up where it can"
    return f"tests/argocd: no real node here ({why}): the operator runs as a host process"


class GitOps:
    def __init__(self, testbed: Cluster, api: ApiClient, argocd: ArgoCD, sim: SimulatorControl, workdir: Path) -> None:
        self.testbed = testbed
        self.api = api
        self.argocd = argocd
        self.sim = sim
        self.dir = workdir
        suffix = secrets.token_hex(3)
        self.suffix = f"-{suffix}"
        self.operator_ns = f"argocd-operator-{suffix}"
        self.watched_ns = f"argocd-clusters-{suffix}"
        self.machines = sim.add_machines(5)
        self.nodes = node_specs(self.machines)
        self.install, self.cluster = self._render()
        self.name = self.cluster["metadata"]["name"]
        self.repo = GitRepo(workdir / "repo")
        self.repo.write("app/install.yaml", self.install)
        self.repo.write(CLUSTER_FILE, [self.manifest(self.nodes[:3])])
        self.revision = self.repo.commit("The operator's install and a ManagerCluster of 3")
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.clusters = Clusters(api, self.watched_ns)
        self.app_name = OPERATOR
        self.app_created = False
        self.operator: OperatorProcess | None = None

    # -- what git holds ---------------------------------------------------------------------------

    def _render(self) -> tuple[list[Obj], Obj]:
        """deploy/argocd/app as Argo CD renders it, in this test's own namespaces. On the node, with
        the dev image and the suite's pace (as hack/kind sets them); elsewhere minus the Deployment
        and the PodDisruptionBudget of its pod (the operator runs as a process, and a budget for
        pods that never exist never turns Healthy)."""
        if IN_CLUSTER:
            objs = kustomize(self._overlay())
        else:
            objs = [o for o in kustomize("deploy/argocd/app") if o["kind"] not in POD_ONLY]
        objs = relocate(objs, operator_ns=self.operator_ns, watched_ns=self.watched_ns, suffix=self.suffix)
        for o in objs:
            if o["kind"] == "Namespace" and o["metadata"]["name"] == WATCHED_NS:
                o["metadata"]["name"] = self.watched_ns
        (cluster,) = [o for o in objs if o["kind"] == "ManagerCluster"]
        return [o for o in objs if o is not cluster], cluster

    def _overlay(self) -> Path:
        """A kustomization over deploy/argocd/app that changes only the image (to the one loaded
        into the node) and adds the e2e suite's 2 s resync, as hack/kind does for deploy/default."""
        overlay = self.dir / "overlay"
        overlay.mkdir()
        name, _, tag = IMAGE.rpartition(":")
        resync = {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--resync-seconds=2"}
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(REPO / "deploy" / "argocd" / "app", overlay)],
            "images": [{"name": "ghcr.io/cloudify-cosmo/cloudify-cluster-operator", "newName": name, "newTag": tag}],
            "patches": [
                {
                    "target": {"kind": "Deployment", "name": OPERATOR},
                    "patch": yaml.safe_dump([resync]),
                }
            ],
        }
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        return overlay

    def manifest(self, nodes: Sequence[Mapping[str, str]], **spec: Any) -> Obj:
        """The sample ManagerCluster (sync wave, options and all) with these nodes and spec keys."""
        obj = copy.deepcopy(self.cluster)
        obj["spec"]["nodes"] = [dict(n) for n in nodes]
        obj["spec"].update(spec)
        return obj

    def commit_cluster(self, message: str, nodes: Sequence[Mapping[str, str]], **spec: Any) -> str:
        self.repo.write(CLUSTER_FILE, [self.manifest(nodes, **spec)])
        return self.commit(message)

    def commit(self, message: str) -> str:
        """Commit, then ask Argo CD to look at git now, as a git webhook would."""
        self.revision = self.repo.commit(message)
        self.refresh()
        return self.revision

    # -- the Application --------------------------------------------------------------------------

    def application(self) -> Obj:
        """deploy/argocd/application.yaml pointed at the test's repository and namespace."""
        (app,) = load_all((REPO / "deploy" / "argocd" / "application.yaml").read_text())
        app["spec"]["source"] = {"repoURL": self.repo.url, "targetRevision": "main", "path": "app"}
        app["spec"]["destination"]["namespace"] = self.operator_ns
        return app

    def create_application(self) -> None:
        if not self.app_created:
            self.custom.create_namespaced_custom_object(*APP[:2], ARGOCD_NAMESPACE, APP[2], self.application())
            self.app_created = True

    def app(self) -> Obj:
        obj: Obj = self.custom.get_namespaced_custom_object(*APP[:2], ARGOCD_NAMESPACE, APP[2], self.app_name)
        return obj

    def refresh(self) -> None:
        if self.app_created:
            patch = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}
            self.custom.patch_namespaced_custom_object(*APP[:2], ARGOCD_NAMESPACE, APP[2], self.app_name, patch)

    def status(self) -> Obj:
        return dict(self.app().get("status") or {})

    def health(self) -> str | None:
        return (self.status().get("health") or {}).get("status")

    def resource(self, kind: str, name: str | None = None, status: Obj | None = None) -> Obj:
        """The Application's entry for one resource ({} when it lists none): sync status and, with
        --persist-resource-health, its health and message."""
        st = self.status() if status is None else status
        for r in st.get("resources") or []:
            if r.get("kind") == kind and (name is None or r.get("name") == name):
                return dict(r)
        return {}

    def cluster_health(self, status: Obj | None = None) -> Obj:
        return dict(self.resource("ManagerCluster", self.name, status).get("health") or {})

    def wait_app(self, pred: Callable[[Obj], T | None], timeout: float = 120.0, message: str = "") -> T:
        """Poll the Application's status; on a timeout, say what Argo CD shows."""
        try:
            return wait_for(lambda: pred(self.status()), timeout=timeout, interval=0.5, message=message)
        except Timeout as e:
            raise Timeout(f"{e}\nArgo CD shows:\n{self.summary()}") from None

    def summary(self, status: Obj | None = None) -> str:
        """The Application's health, sync and last operation, and every resource that is not
        Synced and Healthy, with Argo CD's message for it."""
        st = self.status() if status is None else status
        health, sync, op = st.get("health") or {}, st.get("sync") or {}, st.get("operationState") or {}
        lines = [
            f"  Application: {health.get('status')} {health.get('message') or ''}".rstrip(),
            f"  sync: {sync.get('status')} at {sync.get('revision')}",
            f"  operation: {op.get('phase')}: {op.get('message') or ''}".rstrip(),
        ]
        for r in st.get("resources") or []:
            h = r.get("health") or {}
            if r.get("status") != "Synced" or h.get("status") not in (None, "Healthy"):
                where = f"{r.get('namespace')}/" if r.get("namespace") else ""
                lines.append(
                    f"  {r.get('kind')} {where}{r.get('name')}: {r.get('status')}, {h.get('status')}"
                    f" {h.get('message') or ''}".rstrip()
                )
        return "\n".join(lines)

    def is_settled(self, st: Obj, revision: str | None = None) -> bool:
        """Synced to `revision` (the last commit by default), the last operation finished and
        succeeded, and Healthy."""
        op = st.get("operationState") or {}
        sync = st.get("sync") or {}
        return bool(
            sync.get("status") == "Synced"
            and sync.get("revision") == (revision or self.revision)
            and op.get("phase") == "Succeeded"
            and (op.get("syncResult") or {}).get("revision") == (revision or self.revision)
            and (st.get("health") or {}).get("status") == "Healthy"
        )

    def wait_settled(self, timeout: float = 180.0) -> Obj:
        return self.wait_app(lambda st: st if self.is_settled(st) else None, timeout, "the Application to settle")

    # -- the operator as pods (on the node) -------------------------------------------------------

    def deployment_health(self, status: Obj | None = None) -> Obj:
        """Argo CD's built-in health of the operator's Deployment ({} off the node)."""
        return dict(self.resource("Deployment", OPERATOR, status).get("health") or {})

    def lease_holder(self) -> str | None:
        lease = client.CoordinationV1Api(self.api).read_namespaced_lease(OPERATOR, self.operator_ns)
        return lease.spec.holder_identity if lease.spec else None

    def operator_pods(self) -> list[str]:
        pods = self.core.list_namespaced_pod(
            self.operator_ns, label_selector=f"app.kubernetes.io/name={OPERATOR}"
        ).items
        return sorted(p.metadata.name for p in pods if p.status.phase == "Running")

    # -- the operator, as a process (no node on this bed) -----------------------------------------

    def start_operator(self) -> OperatorProcess:
        """Once Argo CD synced its ServiceAccount (wave 0), run the operator with that account's
        token as the Deployment runs it: every namespace, under a Lease in its own namespace."""
        assert not IN_CLUSTER, "on the node the operator is the Deployment Argo CD synced"
        sa = OPERATOR

        def synced() -> bool:
            try:
                self.core.read_namespaced_service_account(sa, self.operator_ns)
                return True
            except ApiException as e:
                if e.status == 404:
                    return False
                raise

        wait_for(synced, timeout=120, interval=0.5, message="Argo CD to sync the operator's ServiceAccount")
        token = self.testbed.create_token(self.operator_ns, sa)
        kubeconfig = self.testbed.kubeconfig_for_token(token, self.dir / "operator.kubeconfig")
        self.operator = OperatorProcess(
            kubeconfig,
            (),
            resync_seconds=2.0,
            log_path=self.dir / "operator.log",
            extra_args=["--leader-elect"],
            env={"POD_NAMESPACE": self.operator_ns, "POD_ID": f"cloudify-cluster-operator{self.suffix}"},
        ).start()
        return self.operator

    def deploy(self) -> Obj:
        """The Application created and the operator running (as a process off the node); returns
        the settled status."""
        self.create_application()
        if self.operator is None and not IN_CLUSTER:
            self.start_operator()
        return self.wait_settled()

    # -- the simulated managers -------------------------------------------------------------------

    def ip(self, node_name: str) -> str:
        return next(n["hostIP"] for n in self.nodes if n["name"] == node_name)

    def manager_writes(self) -> int:
        ips = {m["host_ip"] for m in self.machines}
        return sum(
            c["count"] for c in self.sim.requests_log()["counts"] if c["host_ip"] in ips and c["method"] in WRITES
        )

    def sim_clusters(self) -> list[Obj]:
        ips = {m["host_ip"] for m in self.machines}
        return [c for c in self.sim.clusters() if ips & {m["host_ip"] for m in c["members"]}]

    def live_members(self) -> set[str]:
        (cluster,) = self.sim_clusters()
        return {m["name"] for m in cluster["members"] if not m["removed"]}

    # -- clean-up ---------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Delete the Application without cascading (it owns the shared CRD), then what it synced,
        ManagerClusters first while the operator still runs to release its finalizer."""
        if self.app_created:
            try:
                patch = {"metadata": {"finalizers": None}}
                self.custom.patch_namespaced_custom_object(*APP[:2], ARGOCD_NAMESPACE, APP[2], self.app_name, patch)
                self.custom.delete_namespaced_custom_object(*APP[:2], ARGOCD_NAMESPACE, APP[2], self.app_name)
            except ApiException as e:
                if e.status != 404:
                    raise
        try:
            if self.clusters.exists(self.name):
                self.clusters.delete(self.name)
                wait_for(lambda: not self.clusters.exists(self.name), timeout=60, message="the ManagerCluster to go")
        finally:
            if self.operator is not None:
                self.operator.stop()
            rbac = client.RbacAuthorizationV1Api(self.api)
            for o in self.install:
                name = o["metadata"]["name"]
                try:
                    if o["kind"] == "Namespace":
                        self.core.delete_namespace(name, propagation_policy="Background")
                    elif o["kind"] == "ClusterRole":
                        rbac.delete_cluster_role(name)
                    elif o["kind"] == "ClusterRoleBinding":
                        rbac.delete_cluster_role_binding(name)
                except ApiException as e:
                    if e.status != 404:
                        raise
