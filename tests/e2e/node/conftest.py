"""Tests only a real node can make: the operator and the simulator as pods (make e2e-node deploys
them, see hack/node/e2e.sh). Collected only when E2E_CLUSTER=node; the rest of tests/e2e runs in
the same session in its in-cluster mode."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from nodetools import DEPLOYMENT, OPERATOR_NS, kubectl, the_leader_pod

collect_ignore_glob = [] if os.environ.get("E2E_CLUSTER") == "node" else ["test_*.py"]


@pytest.fixture
def core(kube_api: ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api)


@pytest.fixture
def restore_operator(core: client.CoreV1Api) -> Iterator[None]:
    """For tests that change the operator's Deployment: put back what make e2e-node deployed
    (hack/kind) and wait for it to be ready again."""
    yield
    kubectl("apply", "--server-side", "--force-conflicts", "-k", "hack/kind")
    kubectl("-n", OPERATOR_NS, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=180s")
    the_leader_pod(core)
