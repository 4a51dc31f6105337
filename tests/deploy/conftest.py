"""Fixtures of the deploy tests: helm (built if missing), the CRD on the control plane, the
operator's own namespace for server-side dry runs, and the simulator for the RBAC lifecycle."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from cloudify_manager_sim.harness import SimulatorProcess

from .deploytools import OPERATOR_NS, helm_binary


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary (v3.22.0) from the tools cache; `make helm` builds it when missing."""
    return helm_binary()


@pytest.fixture(scope="session")
def operator_namespace(kube_api: ApiClient) -> str:
    """deploy/'s own namespace, created for real: a dry run of objects inside a namespace that
    exists only in the same dry run is refused by the apiserver."""
    core = client.CoreV1Api(kube_api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=OPERATOR_NS)))
    except ApiException as e:
        if e.status != 409:
            raise
    return OPERATOR_NS


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorProcess]:
    """One simulator process for the session; tests take fresh machines from it."""
    with SimulatorProcess(machines=0, start_delay=0.3, join_delay=0.3, failover_delay=1.0) as s:
        yield s


@pytest.fixture
def machines(sim: SimulatorProcess) -> Callable[[int], list[dict[str, Any]]]:
    """Fresh, uninitialized simulated managers: machines(3)."""
    return sim.add_machines
