"""https managers: certificate verification is on unless disabled, with a CA from a Secret or a
ConfigMap. The simulator serves its machines with a certificate of a CA made here by openssl."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster, node_specs

pytestmark = pytest.mark.e2e


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=managers-test-ca",
        cwd=d,
    )
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "tls.crt",
        "-extfile",
        "san.ext",
        cwd=d,
    )
    return d


@pytest.fixture(scope="module")
def https_sim(pki: Path, testbed: Any) -> Iterator[SimulatorProcess]:
    if testbed.kind:
        pytest.skip("kind: the in-cluster simulator serves http only")
    extra = ["--tls-cert", str(pki / "tls.crt"), "--tls-key", str(pki / "tls.key")]
    with SimulatorProcess(machines=0, start_delay=0.2, join_delay=0.2, failover_delay=1.0, extra_args=extra) as s:
        yield s


def https_cluster(name: str, machines: list[dict[str, Any]], tls: dict[str, Any] | None) -> dict[str, Any]:
    body = manager_cluster(name, node_specs(machines))
    if tls is not None:
        body["spec"]["tls"] = tls
    return body


def test_endpoints_are_https(https_sim: SimulatorProcess) -> None:
    (m,) = https_sim.add_machines(1)
    assert m["endpoint"].startswith("https://")


def test_ca_from_a_secret(https_sim: SimulatorProcess, pki: Path, clusters: Clusters, operator: OperatorProcess):
    clusters.put_secret("managers-ca", {"ca.crt": (pki / "ca.crt").read_text()})
    clusters.create(https_cluster("tls-secret", https_sim.add_machines(2), {"caSecretRef": {"name": "managers-ca"}}))
    clusters.wait_ready("tls-secret", timeout=30)


def test_ca_from_a_config_map(https_sim: SimulatorProcess, pki: Path, clusters: Clusters, operator: OperatorProcess):
    clusters.core.create_namespaced_config_map(
        clusters.ns,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="managers-ca"), data={"bundle.pem": (pki / "ca.crt").read_text()}
        ),
    )
    tls = {"caConfigMapRef": {"name": "managers-ca", "key": "bundle.pem"}}
    clusters.create(https_cluster("tls-cm", https_sim.add_machines(2), tls))
    clusters.wait_ready("tls-cm", timeout=30)


def test_unknown_ca_is_refused_and_nothing_is_sent(
    https_sim: SimulatorProcess, clusters: Clusters, operator: OperatorProcess
):
    ms = https_sim.add_machines(2)
    clusters.create(https_cluster("tls-untrusted", ms, None))
    st = clusters.wait_status("tls-untrusted", lambda s: s.get("phase") == "Degraded", timeout=20)
    assert "TLS failed" in st["error"]
    ips = {m["host_ip"] for m in ms}
    assert not [c for c in https_sim.requests_log()["counts"] if c["host_ip"] in ips]  # the handshake failed


def test_verification_can_be_disabled_explicitly(
    https_sim: SimulatorProcess, clusters: Clusters, operator: OperatorProcess
):
    clusters.create(https_cluster("tls-insecure", https_sim.add_machines(2), {"insecureSkipVerify": True}))
    clusters.wait_ready("tls-insecure", timeout=30)


def test_ca_that_is_not_pem_is_a_clear_error(
    https_sim: SimulatorProcess, clusters: Clusters, operator: OperatorProcess
):
    clusters.put_secret("junk-ca", {"ca.crt": "not a certificate"})
    ms = https_sim.add_machines(1)
    clusters.create(https_cluster("tls-junk", ms, {"caSecretRef": {"name": "junk-ca"}}))
    st = clusters.wait_status("tls-junk", lambda s: s.get("phase") == "Invalid", timeout=20)
    assert "PEM CA certificate" in st["error"]
