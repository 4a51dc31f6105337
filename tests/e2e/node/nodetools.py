"""What the node tests share: kubectl, the operator's pods, and their containers' cgroups on the host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from kubernetes import client

from clusterop_dev.harness import REPO
from clusterop_dev.testkit import wait_for

OPERATOR_NS = os.environ.get("E2E_OPERATOR_NAMESPACE", "cloudify-cluster-operator")
DEPLOYMENT = "cloudify-cluster-operator"
SELECTOR = "app.kubernetes.io/name=cloudify-cluster-operator"
IMAGE = os.environ.get("E2E_IMAGE", "cloudify-cluster-operator:dev")
HELM = shutil.which("helm") or str(Path.home() / ".cache" / "cloudify-cluster-operator" / "bin" / "helm")


def kubectl(*args: str, stdin: str | None = None) -> str:
    """kubectl on the cluster of $KUBECONFIG (the node's); raises with its stderr on failure."""
    done = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def ready_pods(core: client.CoreV1Api, namespace: str, selector: str = SELECTOR) -> list[Any]:
    """Running pods of the selector whose containers are all ready and none is being deleted."""
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and p.status.phase == "Running"
        and p.status.container_statuses
        and all(c.ready for c in p.status.container_statuses)
    ]


def the_leader_pod(
    core: client.CoreV1Api, namespace: str = OPERATOR_NS, timeout: float = 120, other_than: Any = None
) -> Any:
    """The ready operator pod that holds the leader-election Lease (deploy/ runs two replicas; only
    the holder runs passes). Its identity is its pod name (POD_ID). `other_than`: a pod whose
    successor is wanted (a deleted or restarted leader's name may linger in the Lease until it expires)."""
    leases = client.CoordinationV1Api(core.api_client)

    def leader() -> Any:
        holders = {lease.spec.holder_identity for lease in leases.list_namespaced_lease(namespace).items}
        return next(
            (
                p
                for p in ready_pods(core, namespace)
                if p.metadata.name in holders and (other_than is None or p.metadata.uid != other_than.metadata.uid)
            ),
            None,
        )

    return wait_for(leader, timeout=timeout, interval=0.5, message=f"a ready operator pod leading in {namespace}")


def container_cgroup(pod: Any, controller: str = "memory", container: str = "operator") -> Path:
    """The container's cgroup on the host (kubelet's cgroupfs layout: kubepods/<qos>/pod<uid>/<id>)."""
    (status,) = [c for c in pod.status.container_statuses if c.name == container]
    cid = status.container_id.split("://", 1)[1]
    found = list(Path("/sys/fs/cgroup", controller).glob(f"kubepods*/**/pod{pod.metadata.uid}/{cid}"))
    assert len(found) == 1, f"no {controller} cgroup for container {cid} of {pod.metadata.name}: {found}"
    return found[0]


def read_int(path: Path) -> int:
    return int(path.read_text().strip())


def restarts(pod: Any) -> int:
    return sum(c.restart_count for c in pod.status.container_statuses)


def deployment_args() -> list[str]:
    dep = json.loads(kubectl("-n", OPERATOR_NS, "get", "deployment", DEPLOYMENT, "-o", "json"))
    return list(dep["spec"]["template"]["spec"]["containers"][0]["args"])


def helm(*args: str, check: bool = True) -> str:
    done = subprocess.run([HELM, *args], capture_output=True, text=True, check=False, cwd=REPO)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout
