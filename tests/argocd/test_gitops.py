"""Argo CD itself syncs the operator's install and a ManagerCluster from git (deploy/argocd/app with
its sync waves, deploy/argocd/application.yaml), judges the ManagerCluster with our health.lua from
argocd-cm, and runs our suspend/resume actions through argocd-server's action API. Every test is
judged from Argo CD's own Application status and from the simulated managers.

On the real node (make e2e-argocd, make test) the operator is the Deployment Argo CD synced from
git (2 pods, leader election), so the Application's health covers it too; elsewhere it runs as a
host process (pytest's header says which, in one line). The tests share one Application and run
in file order; each starts from a settled Application.
"""

from __future__ import annotations

from typing import Any

import pytest

from clusterop_dev.testkit import wait_for

from .gitops import CLUSTER_FILE, IN_CLUSTER, GitOps

pytestmark = pytest.mark.argocd
Obj = dict[str, Any]


def test_syncs_and_turns_healthy_only_when_the_cluster_is_ready(gitops: GitOps):
    g = gitops
    g.create_application()
    if IN_CLUSTER:
        seen = _operator_synced_first(g)
    else:
        seen = [_cluster_applied_before_the_operator_runs(g)]
        g.start_operator()
    healthy_while_not_ready: list[Obj] = []

    def settled() -> Obj | None:
        st = g.status()
        seen.append(st)
        if st.get("health", {}).get("status") == "Healthy" and not g.clusters.is_ready(g.name):
            healthy_while_not_ready.append(st)
        return st if g.is_settled(st) else None

    st = g.wait_app(lambda _: settled(), timeout=180, message="the Application to settle")
    assert not healthy_while_not_ready
    assert "Progressing" in {(s.get("health") or {}).get("status") for s in seen}
    assert g.clusters.is_ready(g.name)
    assert g.cluster_health(st) == {"status": "Healthy", "message": "3/3 nodes online, leader manager-1"}
    assert g.resource("CustomResourceDefinition", "managerclusters.cloudify.co", st)["status"] == "Synced"
    (cluster,) = g.sim_clusters()
    assert cluster["bootstraps"] == 1
    assert {m["name"] for m in cluster["members"]} == {"manager-1", "manager-2", "manager-3"}
    if IN_CLUSTER:
        # The operator that formed it is one of the Deployment's two pods: it holds the Lease.
        assert g.deployment_health(st)["status"] == "Healthy"
        assert g.resource("PodDisruptionBudget", "cloudify-cluster-operator", st)["health"]["status"] == "Healthy"
        pods = g.operator_pods()
        assert len(pods) == 2, pods
        assert g.lease_holder() in pods


def _cluster_applied_before_the_operator_runs(g: GitOps) -> Obj:
    """Off the node, before the operator process runs: wave 1 (the ManagerCluster, Missing until
    then) is applied, and the sync operation ends there: Argo CD waits for health between waves,
    not after the last. The Application stays Progressing on the ManagerCluster's health alone."""
    st = g.wait_app(
        lambda st: (
            st
            if g.cluster_health(st).get("status") not in (None, "Missing")
            and (st.get("operationState") or {}).get("phase") not in (None, "Running")
            else None
        ),
        message="the sync to apply the ManagerCluster",
    )
    assert st["operationState"]["phase"] == "Succeeded", st["operationState"]
    assert g.cluster_health(st) == {"status": "Progressing", "message": "Waiting for the operator to report status"}
    assert st["health"]["status"] == "Progressing"
    assert g.manager_writes() == 0
    return st


def _operator_synced_first(g: GitOps) -> list[Obj]:
    """On the node the operator's Deployment is in wave 0: Argo CD applies the ManagerCluster
    (wave 1) only once its built-in Deployment health says Healthy (both pods rolled out and
    Ready). Returns the statuses seen until the ManagerCluster was applied."""
    seen: list[Obj] = []

    def cluster_applied() -> Obj | None:
        st = g.status()
        seen.append(st)
        return st if g.cluster_health(st).get("status") not in (None, "Missing") else None

    g.wait_app(lambda _: cluster_applied(), timeout=240, message="the operator synced, then the ManagerCluster")
    deployment = [g.deployment_health(st).get("status") for st in seen]
    assert deployment[-1] == "Healthy", deployment
    return seen


def _argocd_writes(obj: Obj) -> list[tuple[str, str]]:
    """(manager, time) of each managedFields entry Argo CD's controller wrote."""
    return sorted(
        (f["manager"], f.get("time", ""))
        for f in obj["metadata"].get("managedFields") or []
        if f["manager"].startswith("argocd")
    )


def test_stays_synced_at_rest_across_resyncs(gitops: GitOps):
    g = gitops
    st0 = g.deploy()
    started = st0["operationState"]["startedAt"]
    applied = _argocd_writes(g.clusters.get(g.name))
    writes = g.manager_writes()
    seen: set[str] = {st0["reconciledAt"]}

    def resynced_three_times() -> bool:
        st = g.status()
        assert st["sync"]["status"] == "Synced", st["sync"]
        assert st["health"]["status"] == "Healthy", st.get("resources")
        assert st["operationState"]["startedAt"] == started, "Argo CD synced again"
        seen.add(st["reconciledAt"])
        return len(seen) > 3

    wait_for(resynced_three_times, timeout=120, interval=0.5, message="three resyncs")
    assert _argocd_writes(g.clusters.get(g.name)) == applied
    assert g.clusters.get(g.name)["metadata"]["finalizers"]  # the operator's, not in git, not drift
    assert g.manager_writes() == writes


def test_scales_3_to_5_to_3_removing_the_master(gitops: GitOps):
    g = gitops
    g.deploy()
    g.commit_cluster("Scale to 5", g.nodes)
    g.wait_settled()
    assert g.clusters.status(g.name)["nodeSummary"] == "5/5"
    assert g.live_members() == {n["name"] for n in g.nodes}

    leader = g.clusters.status(g.name)["leader"]
    keep = [n for n in g.nodes if n["name"] != leader][-3:]
    g.commit_cluster(f"Scale to 3 without the master {leader}", keep)
    st = g.wait_settled()
    assert g.clusters.status(g.name)["nodeSummary"] == "3/3"
    assert g.live_members() == {n["name"] for n in keep}
    assert len(g.sim_clusters()) == 1
    assert g.cluster_health(st)["status"] == "Healthy"


def test_an_invalid_spec_is_refused_and_argocd_shows_why(gitops: GitOps):
    g = gitops
    g.deploy()
    live = g.clusters.get(g.name)
    nodes = live["spec"]["nodes"]
    writes = g.manager_writes()
    bad = [dict(n) for n in nodes]
    bad[0]["hostIP"] = "not-an-ip"
    bad_revision = g.commit_cluster("An invalid hostIP", bad)

    def refused(st: Obj) -> str | None:
        op = st.get("operationState") or {}
        if (op.get("syncResult") or op.get("operation", {}).get("sync") or {}).get("revision") != bad_revision:
            return None
        messages = [op.get("message") or ""] + [
            r.get("message") or "" for r in (op.get("syncResult") or {}).get("resources") or []
        ]
        return next((m for m in messages if "hostIP must be an IP address" in m), None)

    message = g.wait_app(refused, message="Argo CD to show the apiserver's refusal")
    assert "ManagerCluster" in message or "managerclusters" in message or "hostIP" in message
    st = g.status()
    assert st["sync"]["status"] == "OutOfSync"
    assert g.clusters.get(g.name)["metadata"]["generation"] == live["metadata"]["generation"]
    assert g.manager_writes() == writes

    # Back to the valid spec: a new commit. The live object already matches it, so Argo CD shows it
    # Synced at once and auto-sync has nothing to do; the failed operation, still retrying the
    # invalid revision, is terminated and a sync of the revert run through argocd-server, as a
    # user would to clear it.
    revert = g.commit_cluster("Revert the invalid hostIP", nodes)
    g.wait_app(
        lambda st: (st.get("sync") or {}).get("revision") == revert and st["sync"]["status"] == "Synced",
        message="the revert to show Synced",
    )
    if (g.status().get("operationState") or {}).get("phase") == "Running":
        g.argocd.cli("app", "terminate-op", g.app_name)
    # Ended: a terminated operation passes through Terminating (still in progress for a new sync).
    ended = ("Succeeded", "Failed", "Error")
    g.wait_app(lambda st: (st.get("operationState") or {}).get("phase") in ended, message="the operation to end")
    g.argocd.cli("app", "sync", g.app_name, "--async")
    g.wait_settled()
    assert g.manager_writes() == writes


def test_a_manager_offline_is_degraded_naming_it(gitops: GitOps):
    g = gitops
    g.deploy()
    status = g.clusters.status(g.name)
    node = next(n["name"] for n in status["nodes"] if not n["master"])
    g.sim.offline(g.ip(node))
    try:
        st = g.wait_app(
            lambda st: st if g.cluster_health(st).get("status") == "Degraded" else None,
            message=f"Degraded with {node} offline",
        )
        assert node in g.cluster_health(st)["message"]
        assert st["health"]["status"] == "Degraded"
    finally:
        g.sim.online(g.ip(node))
    st = g.wait_app(lambda st: st if st["health"]["status"] == "Healthy" else None, message="Healthy again")
    assert g.cluster_health(st)["status"] == "Healthy"
    assert st["sync"]["status"] == "Synced"


def test_suspend_and_resume_through_argocd_actions(gitops: GitOps):
    g = gitops
    g.deploy()
    action = ["--kind", "ManagerCluster", "--resource-name", g.name, "--namespace", g.watched_ns]
    g.argocd.cli("app", "actions", "run", g.app_name, "suspend", *action)
    st = g.wait_app(lambda st: st if g.cluster_health(st).get("status") == "Suspended" else None, message="Suspended")
    assert g.cluster_health(st)["message"] == "Reconciliation is paused (annotation cloudify.co/paused)"
    assert st["health"]["status"] == "Suspended"
    assert g.clusters.get(g.name)["metadata"]["annotations"]["cloudify.co/paused"] == "true"

    # A change synced while suspended: the operator sees it and plans, but writes nothing.
    writes = g.manager_writes()
    nodes = g.clusters.get(g.name)["spec"]["nodes"]
    g.commit_cluster("Heartbeat 30", nodes, config={"heartbeat": 30})
    g.wait_app(
        lambda st: (st.get("sync") or {}).get("revision") == g.revision and st["sync"]["status"] == "Synced",
        message="the config change to be synced",
    )
    g.clusters.wait_status(g.name, lambda s: bool(s.get("plannedActions")), timeout=60, message="planned actions")
    assert g.cluster_health()["status"] == "Suspended"
    assert g.manager_writes() == writes
    assert all(c["settings"].get("heartbeat") == 15 for c in g.sim_clusters())

    g.argocd.cli("app", "actions", "run", g.app_name, "resume", *action)
    st = g.wait_settled()
    assert g.cluster_health(st)["status"] == "Healthy"
    assert "cloudify.co/paused" not in (g.clusters.get(g.name)["metadata"].get("annotations") or {})
    (cluster,) = g.sim_clusters()
    assert cluster["settings"]["heartbeat"] == 30
    assert g.manager_writes() > writes


def test_pruning_the_cluster_from_git_honours_its_deletion_policy(gitops: GitOps):
    g = gitops
    g.deploy()
    assert g.clusters.get(g.name)["spec"]["deletionPolicy"] == "Orphan"
    members = g.live_members()
    writes = g.manager_writes()
    g.repo.remove(CLUSTER_FILE)
    g.commit("Remove the ManagerCluster")
    wait_for(lambda: not g.clusters.exists(g.name), timeout=120, interval=0.5, message="Argo CD to prune it")
    st = g.wait_settled()
    assert not g.resource("ManagerCluster", g.name, st)
    # Orphan: the managers are left as they were.
    assert g.live_members() == members
    assert g.manager_writes() == writes
