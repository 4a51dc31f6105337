"""The GitOps set-up of docs/argocd.md on the test bed: a git repository holding what
deploy/argocd/app renders (sync waves and all), the Application of deploy/argocd/application.yaml
pointed at it, and what the tests judge by: Argo CD's own Application status, the ManagerCluster,
and the simulated managers.

One difference from a real cluster, said once: the test bed has no node, so the operator's
Deployment cannot run a pod; it and its PodDisruptionBudget are left out of the repository and the
operator runs as a host process, as the Deployment runs it, with the token of the ServiceAccount
that Argo CD synced (so the synced RBAC is what it runs with).
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.harness import Clusters, OperatorProcess, node_specs, wait_for
from clusterop_dev.testbed import Cluster
from deploy.deploytools import WATCHED_NS, kustomize, load_all, relocate

from .argocdtools import ARGOCD_NAMESPACE, REPO, ArgoCD, GitRepo

Obj = dict[str, Any]
T = TypeVar("T")
WRITES = ("POST", "PUT", "PATCH", "DELETE")
APP = ("argoproj.io", "v1alpha1", "applications")
CLUSTER_FILE = "app/managercluster.yaml"
# What exists only for the operator's pod, left out of the repository on a bed with no node.
POD_ONLY = ("Deployment", "PodDisruptionBudget")


class GitOps:
    def __init__(self, testbed: Cluster, api: ApiClient, argocd: ArgoCD, sim: SimulatorProcess, workdir: Path) -> None:
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
        self.app_name = "cloudify-cluster-operator"
        self.app_created = False
        self.operator: OperatorProcess | None = None

    # -- what git holds ---------------------------------------------------------------------------

    def _render(self) -> tuple[list[Obj], Obj]:
        """deploy/argocd/app as Argo CD renders it, in this test's own namespaces, minus the
        Deployment and the PodDisruptionBudget of its pod (no node here: the operator runs as a
        process, and a budget for pods that never exist never turns Healthy)."""
        objs = [o for o in kustomize("deploy/argocd/app") if o["kind"] not in POD_ONLY]
        objs = relocate(objs, operator_ns=self.operator_ns, watched_ns=self.watched_ns, suffix=self.suffix)
        for o in objs:
            if o["kind"] == "Namespace" and o["metadata"]["name"] == WATCHED_NS:
                o["metadata"]["name"] = self.watched_ns
        (cluster,) = [o for o in objs if o["kind"] == "ManagerCluster"]
        return [o for o in objs if o is not cluster], cluster

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
        return wait_for(lambda: pred(self.status()), timeout=timeout, interval=0.5, message=message)

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

    # -- the operator, as a process (no node on this bed) -----------------------------------------

    def start_operator(self) -> OperatorProcess:
        """Once Argo CD synced its ServiceAccount (wave 0), run the operator with that account's
        token as the Deployment runs it: every namespace, under a Lease in its own namespace."""
        sa = "cloudify-cluster-operator"

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
        """The Application created and the operator running; returns the settled status."""
        self.create_application()
        if self.operator is None:
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
