"""Issue 8 (1d): bad input, as a table. Each row says where it must be caught: `schema` (the
apiserver's OpenAPI schema or CEL rules refuse it with 422 at apply time) or `operator` (the
object is accepted and the operator reports it in status and an Event, without calling any
manager). Every row also checks that no manager received a write."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.harness import Clusters, OperatorProcess, manager_cluster
from clusterop_dev.testkit import wait_for

from .support import KEY, PASSWORD, SimView

Spec = dict[str, Any]
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

pytestmark = pytest.mark.chaos


@dataclass(frozen=True)
class Row:
    id: str
    where: str  # "schema" | "operator"
    message: str
    spec: Callable[[Spec], None] = lambda s: None
    secrets: Callable[[Clusters], None] = lambda c: None


def nodes(s: Spec) -> list[dict[str, Any]]:
    return list(s["nodes"])


def node0(**fields: Any) -> Callable[[Spec], None]:
    def edit(s: Spec) -> None:
        s["nodes"][0].update(fields)
        for k in [k for k, v in fields.items() if v is None]:
            del s["nodes"][0][k]

    return edit


def setf(**fields: Any) -> Callable[[Spec], None]:
    def edit(s: Spec) -> None:
        for k, v in fields.items():
            if v is None:
                s.pop(k, None)
            else:
                s[k] = v

    return edit


def many_nodes(s: Spec) -> None:
    s["nodes"] = [{"name": f"n{i}", "hostIP": f"10.9.0.{i}", "endpoint": f"http://10.9.0.{i}:1"} for i in range(33)]


def dup(field: str) -> Callable[[Spec], None]:
    def edit(s: Spec) -> None:
        s["nodes"][1][field] = s["nodes"][0][field]

    return edit


def key_secret(value: str, key: str = "encryptionKey") -> Callable[[Clusters], None]:
    return lambda c: c.put_secret("cluster-key", {key: value})


def creds(**data: str) -> Callable[[Clusters], None]:
    return lambda c: c.put_secret("manager-admin", data)


def b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode()


SCHEMA = [
    Row("no-nodes", "schema", "should have at least 1 items", setf(nodes=[])),
    Row("33-nodes", "schema", "must have at most 32 items", many_nodes),
    Row("nodes-not-a-list", "schema", "must be of type array", setf(nodes={"a": 1})),
    Row("hostip-hostname", "schema", "hostIP must be an IP address", node0(hostIP="manager.local")),
    Row("hostip-garbage", "schema", "hostIP must be an IP address", node0(hostIP="999.1.1.1")),
    Row("hostip-number", "schema", "must be of type string", node0(hostIP=10)),
    Row("hostip-missing", "schema", "Required value", node0(hostIP=None)),
    Row("dup-hostip", "schema", "every node needs its own hostIP", dup("hostIP")),
    Row("dup-endpoint", "schema", "every node needs its own endpoint", dup("endpoint")),
    Row("dup-name", "schema", "Duplicate value", dup("name")),
    Row("endpoint-ftp", "schema", "endpoint must be an http(s) URL", node0(endpoint="ftp://127.0.0.1:1")),
    Row("endpoint-not-url", "schema", "endpoint must be an http(s) URL", node0(endpoint="not a url")),
    Row("endpoint-missing", "schema", "Required value", node0(endpoint=None)),
    Row("endpoint-creds", "schema", "must not carry credentials", node0(endpoint="http://admin:pw@127.0.0.1:1")),
    Row("endpoint-user", "schema", "must not carry credentials", node0(endpoint="http://admin@127.0.0.1:1")),
    Row("endpoint-query", "schema", "must not carry a query", node0(endpoint="http://127.0.0.1:1/?token=x")),
    Row("endpoint-fragment", "schema", "must not carry a query or fragment", node0(endpoint="http://127.0.0.1:1/#x")),
    Row("endpoint-huge", "schema", "Too long", node0(endpoint="http://127.0.0.1:1/" + "a" * 2100)),
    Row("name-empty", "schema", "should be at least 1 chars long", node0(name="")),
    Row("name-too-long", "schema", "Too long", node0(name="n" * 64)),
    Row("name-umlaut", "schema", "should match", node0(name="mänager")),
    Row("name-zero-width", "schema", "should match", node0(name="man\u200bager")),
    Row("name-rtl-override", "schema", "should match", node0(name="abc\u202edef")),
    Row("name-emoji", "schema", "should match", node0(name="node-\U0001f525")),
    Row("name-space", "schema", "should match", node0(name="my node")),
    Row("name-leading-dash", "schema", "should match", node0(name="-node")),
    Row("no-key-ref", "schema", "Required value", setf(encryptionKeySecretRef=None)),
    Row("key-ref-empty-name", "schema", "should be at least 1 chars long", setf(encryptionKeySecretRef={"name": ""})),
    Row("key-generate-string", "schema", "must be of type boolean",
        setf(encryptionKeySecretRef={"name": "k", "generate": "yes"})),
    Row("no-credentials-ref", "schema", "Required value", setf(credentialsSecretRef=None)),
    Row("credentials-ref-string", "schema", "must be of type object", setf(credentialsSecretRef="manager-admin")),
    Row("config-string", "schema", "must be of type object", setf(config="heartbeat=15")),
    Row("config-list", "schema", "must be of type object", setf(config=[1, 2])),
    Row("config-master", "schema", "config.master is not a setting", setf(config={"master": "m1"})),
    Row("deletion-policy", "schema", "Unsupported value", setf(deletionPolicy="Delete")),
    Row("tls-both-refs", "schema", "set caSecretRef or caConfigMapRef, not both",
        setf(tls={"caSecretRef": {"name": "a"}, "caConfigMapRef": {"name": "b"}})),
    Row("tls-skip-string", "schema", "must be of type boolean", setf(tls={"insecureSkipVerify": "true"})),
    Row("tls-ref-no-name", "schema", "Required value", setf(tls={"caSecretRef": {"key": "ca.crt"}})),
    Row("tenant-huge", "schema", "Too long", setf(tenant="t" * 300)),
    Row("tenant-number", "schema", "must be of type string", setf(tenant=42)),
]  # fmt: skip

OPERATOR = [
    Row("credentials-secret-missing", "operator", "(credentialsSecretRef) does not exist yet",
        secrets=lambda c: c.core.delete_namespaced_secret("manager-admin", c.ns)),
    Row("key-secret-missing", "operator", "(encryptionKeySecretRef) does not exist yet",
        secrets=lambda c: c.core.delete_namespaced_secret("cluster-key", c.ns)),
    Row("credentials-no-password", "operator", "must hold non-empty keys username and password",
        secrets=creds(username="admin")),
    Row("credentials-empty-username", "operator", "must hold non-empty keys username and password",
        secrets=creds(username="", password=PASSWORD)),
    Row("credentials-wrong-keys", "operator", "must hold non-empty keys username and password",
        secrets=creds(user="admin", passwd=PASSWORD)),
    Row("key-wrong-key-name", "operator", "has no key 'encryptionKey'", secrets=key_secret(b64(16), key="key")),
    Row("key-ref-names-missing-key", "operator", "has no key 'other'",
        spec=setf(encryptionKeySecretRef={"name": "cluster-key", "key": "other"})),
    Row("key-not-base64", "operator", "must be base64 of exactly 16 bytes", secrets=key_secret("not base64 at all!")),
    Row("key-15-bytes", "operator", "must be base64 of exactly 16 bytes", secrets=key_secret(b64(15))),
    Row("key-32-bytes", "operator", "must be base64 of exactly 16 bytes", secrets=key_secret(b64(32))),
    Row("key-empty", "operator", "must be base64 of exactly 16 bytes", secrets=key_secret("")),
    Row("key-unicode", "operator", "must be base64 of exactly 16 bytes", secrets=key_secret("ключ-шифрования-16")),
    Row("key-urlsafe-alphabet", "operator", "must be base64 of exactly 16 bytes",
        secrets=key_secret(base64.urlsafe_b64encode(b"\xfb\xff" * 8).decode())),
    Row("tls-ca-secret-missing", "operator", "(tls.caSecretRef) does not exist yet",
        spec=setf(tls={"caSecretRef": {"name": "no-such-ca"}})),
    Row("tls-ca-secret-not-pem", "operator", "must hold a PEM CA certificate",
        spec=setf(tls={"caSecretRef": {"name": "junk-ca"}}),
        secrets=lambda c: c.put_secret("junk-ca", {"ca.crt": "hello"})),
    Row("tls-ca-secret-wrong-key", "operator", "must hold a PEM CA certificate",
        spec=setf(tls={"caSecretRef": {"name": "pem-ca"}}),
        secrets=lambda c: c.put_secret("pem-ca", {"ca.pem": PEM})),
    Row("tls-ca-configmap-missing", "operator", "(tls.caConfigMapRef) does not exist yet",
        spec=setf(tls={"caConfigMapRef": {"name": "no-such-cm"}})),
]  # fmt: skip


def base_spec(machines: list[dict[str, Any]]) -> Spec:
    nodes = [{"name": f"m{i + 1}", "hostIP": m["host_ip"], "endpoint": m["endpoint"]} for i, m in enumerate(machines)]
    spec: Spec = manager_cluster("bad", nodes)["spec"]
    return spec


def body(name: str, spec: Spec) -> dict[str, Any]:
    return {"apiVersion": "cloudify.co/v1alpha1", "kind": "ManagerCluster", "metadata": {"name": name}, "spec": spec}


def test_the_table_is_big_enough() -> None:
    assert len(SCHEMA) + len(OPERATOR) >= 40
    assert len({r.id for r in SCHEMA + OPERATOR}) == len(SCHEMA + OPERATOR)


@pytest.mark.parametrize("row", SCHEMA, ids=[r.id for r in SCHEMA])
def test_refused_by_the_apiserver(row: Row, sim: SimulatorProcess, view: SimView, clusters: Clusters) -> None:
    ms = sim.add_machines(2)
    spec = base_spec(ms)
    row.spec(spec)
    with pytest.raises(ApiException) as refused:
        clusters.create(body("bad", spec))
    assert refused.value.status == 422, refused.value.body
    assert row.message in str(refused.value.body), refused.value.body
    assert view.writes_to(m["host_ip"] for m in ms) == 0


def test_reported_by_the_operator(
    sim: SimulatorProcess, view: SimView, clusters: Clusters, operators: Callable[..., OperatorProcess]
) -> None:
    """All operator rows at once, each in its own namespace-local object; one operator watches."""
    made: dict[str, tuple[Row, list[dict[str, Any]]]] = {}
    operators()
    for i, row in enumerate(OPERATOR):
        # Each row gets Secrets of its own names, so rows cannot fix each other's input.
        c = Clusters(clusters.api, clusters.ns)
        ms = sim.add_machines(2)
        spec = base_spec(ms)
        spec["encryptionKeySecretRef"] = {**spec["encryptionKeySecretRef"], "name": f"key-{i}"}
        spec["credentialsSecretRef"] = {"name": f"admin-{i}"}
        c.put_secret(f"key-{i}", {"encryptionKey": KEY})
        c.put_secret(f"admin-{i}", {"username": "admin", "password": PASSWORD})
        row.spec(spec)
        if spec["encryptionKeySecretRef"]["name"] == "cluster-key":
            spec["encryptionKeySecretRef"]["name"] = f"key-{i}"
        row.secrets(_Renamed(c, i))  # type: ignore[arg-type]
        c.create(body(f"row-{i}", spec))
        made[row.id] = (row, ms)
    failures = []
    for i, (row, ms) in enumerate(made.values()):
        try:
            words = row.message
            st = clusters.wait_status(
                f"row-{i}", lambda s, w=words: w in (s.get("error") or ""), timeout=30, message=row.id
            )
            assert st["phase"] in ("Invalid", "Pending"), st["phase"]
            ready = next(c for c in st["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "False" and row.message in ready["message"]
            wait_for(
                lambda n=f"row-{i}", w=words: any(
                    e["type"] == "Warning" and w in (e["message"] or "") for e in clusters.events(n)
                ),
                timeout=15,
                message=f"a Warning Event for {row.id}",
            )
            assert view.writes_to(m["host_ip"] for m in ms) == 0
        except AssertionError as e:
            failures.append(f"{row.id}: {e}")
    assert not failures, "\n".join(failures)


class _Renamed:
    """A Clusters view whose Secret names `manager-admin` / `cluster-key` map to the row's own."""

    def __init__(self, c: Clusters, i: int) -> None:
        self.c, self.i = c, i
        self.ns = c.ns
        self.core = _RenamedCore(c, i)

    def _name(self, name: str) -> str:
        return {"manager-admin": f"admin-{self.i}", "cluster-key": f"key-{self.i}"}.get(name, name)

    def put_secret(self, name: str, data: dict[str, str]) -> None:
        self.c.put_secret(self._name(name), data)


class _RenamedCore:
    def __init__(self, c: Clusters, i: int) -> None:
        self.c, self.i = c, i

    def delete_namespaced_secret(self, name: str, ns: str) -> None:
        mapped = {"manager-admin": f"admin-{self.i}", "cluster-key": f"key-{self.i}"}.get(name, name)
        self.c.core.delete_namespaced_secret(mapped, ns)
