"""The control plane is real: CRD schemas and CEL rules are enforced by the apiserver, field
descriptions reach `kubectl explain`, RBAC holds for ServiceAccount tokens, and
kube-controller-manager deletes namespaces and collects owned objects. Also: the test bed leaves
no process behind, keeps the logs of a failed start, and its CLI starts and stops in the background.

These run against the session's `testbed` (a local one, or kind when E2E_CLUSTER is set). They use
the Python client, not kubectl; the one kubectl test is skipped when kubectl is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from clusterop_dev.testbed import Cluster, TestBed, TestBedError, control_plane_version, get_json, local_mode
from clusterop_dev.testkit import wait_for

GROUP, VERSION, PLURAL, KIND = "testbed.clusterop.dev", "v1", "widgets", "Widget"
REPLICAS_DOC = "How many widget replicas to run, from 1 to 5."
NODES_DOC = "Names of the nodes that carry the widget."
CEL_MESSAGE = "nodes must not outnumber replicas"

local_only = pytest.mark.skipif(not local_mode(), reason="E2E_CLUSTER=kind: starts local control-plane processes")


def gone(read: Callable[[], object]) -> bool:
    try:
        read()
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def widget_crd() -> dict[str, Any]:
    spec_schema = {
        "type": "object",
        "description": "What the widget should be.",
        "required": ["replicas"],
        "properties": {
            "replicas": {"type": "integer", "minimum": 1, "maximum": 5, "description": REPLICAS_DOC},
            # CEL over lists and strings only fits the cost budget when both are bounded.
            "nodes": {
                "type": "array",
                "maxItems": 16,
                "description": NODES_DOC,
                "items": {"type": "string", "maxLength": 63},
            },
        },
        "x-kubernetes-validations": [
            {"rule": "!has(self.nodes) || size(self.nodes) <= self.replicas", "message": CEL_MESSAGE},
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"plural": PLURAL, "singular": "widget", "kind": KIND, "listKind": f"{KIND}List"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A widget, to prove the apiserver serves CRDs.",
                            "properties": {"spec": spec_schema},
                        }
                    },
                }
            ],
        },
    }


def widget(name: str, replicas: Any, nodes: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": replicas}
    if nodes is not None:
        spec["nodes"] = nodes
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": name}, "spec": spec}


def refusal(call: Callable[..., object], *args: Any) -> ApiException:
    """The ApiException that call(*args) raises."""
    with pytest.raises(ApiException) as refused:
        call(*args)
    return refused.value


def crd_model(crd: dict[str, Any]) -> client.V1CustomResourceDefinition:
    model = client.V1CustomResourceDefinition.from_dict(crd)
    assert model is not None
    return model


def client_from_kubeconfig(path: Path) -> ApiClient:
    load: Any = config.new_client_from_config  # untyped
    api: ApiClient = load(str(path))
    return api


@pytest.fixture(scope="module")
def widgets(kube_api: ApiClient) -> Iterator[str]:
    """The Widget CRD, applied and Established; deleted at the end of the module."""
    extensions = client.ApiextensionsV1Api(kube_api)
    name = f"{PLURAL}.{GROUP}"
    if not gone(lambda: extensions.read_custom_resource_definition(name)):
        extensions.delete_custom_resource_definition(name)
        wait_for(lambda: gone(lambda: extensions.read_custom_resource_definition(name)), 30, message="the old CRD")
    extensions.create_custom_resource_definition(crd_model(widget_crd()))

    def established() -> bool:
        status = extensions.read_custom_resource_definition(name).status
        conditions = (status.conditions if status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, 30, message=f"CRD {name} to be Established")
    yield name
    extensions.delete_custom_resource_definition(name)


def find_property_docs(openapi: Any, kind: str) -> dict[str, str]:
    """Descriptions of spec's properties in the OpenAPI v3 document, for the schema of `kind`."""
    for schema_name, schema in openapi.get("components", {}).get("schemas", {}).items():
        if schema_name.endswith(f".{kind}"):
            spec = schema.get("properties", {}).get("spec", {})
            return {k: v.get("description", "") for k, v in spec.get("properties", {}).items()}
    return {}


# ---- the apiserver ---------------------------------------------------------------------------------


@pytest.mark.skipif(not local_mode(), reason="E2E_CLUSTER=kind: kind runs its own version")
def test_version_reports_the_pinned_release(kube_api: ApiClient) -> None:
    assert get_json(kube_api, "/version")["gitVersion"] == control_plane_version()


def test_crd_field_descriptions_are_published_for_kubectl_explain(kube_api: ApiClient, widgets: str) -> None:
    # kubectl explain reads /openapi/v3/apis/<group>/<version>; the apiserver publishes a CRD's
    # document there a moment after it is Established.
    def docs() -> dict[str, str]:
        try:
            return find_property_docs(get_json(kube_api, f"/openapi/v3/apis/{GROUP}/{VERSION}"), KIND)
        except TestBedError:
            return {}

    published = wait_for(docs, 30, message=f"the OpenAPI v3 document of {GROUP}/{VERSION}")
    assert published == {"replicas": REPLICAS_DOC, "nodes": NODES_DOC}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_explain_shows_field_descriptions(testbed: Cluster, widgets: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(testbed.kubeconfig)}

    def explained() -> str:
        done = subprocess.run(
            ["kubectl", "explain", f"{PLURAL}.spec"], env=env, capture_output=True, text=True, check=False
        )
        return done.stdout if REPLICAS_DOC in done.stdout else ""

    out = wait_for(explained, 30, message="kubectl explain to show the field descriptions")
    assert NODES_DOC in out


def test_custom_object_within_schema_and_rules_is_stored(kube_api: ApiClient, widgets: str, namespace: str) -> None:
    objects = client.CustomObjectsApi(kube_api)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("ok", 2, ["a", "b"]))
    stored = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "ok")
    assert isinstance(stored, dict)
    assert stored["spec"] == {"replicas": 2, "nodes": ["a", "b"]}


def test_custom_object_violating_the_schema_is_refused(kube_api: ApiClient, widgets: str, namespace: str) -> None:
    objects = client.CustomObjectsApi(kube_api)
    refused = refusal(objects.create_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, widget("big", 9))
    assert refused.status == 422
    assert "spec.replicas" in str(refused.body)
    assert "should be less than or equal to 5" in str(refused.body)


def test_custom_object_violating_a_cel_rule_is_refused_with_its_message(
    kube_api: ApiClient, widgets: str, namespace: str
) -> None:
    objects = client.CustomObjectsApi(kube_api)
    crowded = widget("crowded", 1, ["a", "b", "c"])
    refused = refusal(objects.create_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, crowded)
    assert refused.status == 422
    assert CEL_MESSAGE in str(refused.body)


def test_cel_rule_over_unbounded_lists_is_refused_by_the_cost_budget(kube_api: ApiClient) -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = f"unboundeds.{GROUP}"
    crd["spec"]["names"] = {"plural": "unboundeds", "kind": "Unbounded"}
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["nodes"] = {"type": "array", "items": {"type": "string"}}  # no maxItems, no maxLength
    spec["x-kubernetes-validations"] = [
        {"rule": "self.nodes.all(a, self.nodes.all(b, a == b || !a.contains(b)))", "message": "m"}
    ]
    extensions = client.ApiextensionsV1Api(kube_api)
    refused = refusal(extensions.create_custom_resource_definition, crd_model(crd))
    assert refused.status == 422
    assert "cost" in str(refused.body)


# ---- RBAC ------------------------------------------------------------------------------------------


def test_service_account_token_gets_what_its_role_grants_and_nothing_else(
    testbed: Cluster, kube_api: ApiClient, namespace: str, tmp_path: Path
) -> None:
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="configmap-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="configmap-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
        ),
    )
    token = testbed.create_token(namespace, "reader", duration=600)
    kubeconfig = testbed.kubeconfig_for_token(token, tmp_path / "reader.kubeconfig")

    with testbed.token_client(token) as as_reader, client_from_kubeconfig(kubeconfig) as via_file:
        for api in (as_reader, via_file):
            reader = client.CoreV1Api(api)

            def allowed(reader: client.CoreV1Api = reader) -> bool:
                try:
                    reader.list_namespaced_config_map(namespace)
                except ApiException as error:
                    if error.status == 403:
                        return False  # the RBAC authorizer's cache may lag the binding by a moment
                    raise
                return True

            wait_for(allowed, 10, message="the Role to grant listing configmaps")
            nope = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="nope"))
            refused = [
                refusal(reader.list_namespaced_secret, namespace),
                refusal(reader.create_namespaced_config_map, namespace, nope),
                refusal(reader.list_namespaced_config_map, "default"),
                refusal(reader.list_namespace),
            ]
            assert [e.status for e in refused] == [403, 403, 403, 403]
            assert f"system:serviceaccount:{namespace}:reader" in str(refused[0].body)


# ---- kube-controller-manager -----------------------------------------------------------------------


def needs_controller_manager(testbed: Cluster) -> None:
    if not testbed.has_controller_manager:
        pytest.skip("no kube-controller-manager (KUBEBUILDER_ASSETS without it)")


def test_deleted_namespace_is_gone(testbed: Cluster, kube_api: ApiClient) -> None:
    needs_controller_manager(testbed)
    core = client.CoreV1Api(kube_api)
    name = f"doomed-{os.urandom(3).hex()}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content")))
    core.delete_namespace(name)
    # Only the namespace controller empties a Terminating namespace and removes its finalizer.
    wait_for(lambda: gone(lambda: core.read_namespace(name)), 30, message=f"namespace {name} to be deleted")


def test_owned_configmap_is_garbage_collected_with_its_owner(
    testbed: Cluster, kube_api: ApiClient, namespace: str
) -> None:
    needs_controller_manager(testbed)
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    assert owner.metadata is not None and owner.metadata.uid is not None
    reference = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owned", owner_references=[reference]))
    )
    assert not gone(lambda: core.read_namespaced_config_map("owned", namespace))
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    wait_for(
        lambda: gone(lambda: core.read_namespaced_config_map("owned", namespace)),
        30,
        message="the owned ConfigMap to be garbage-collected",
    )


# ---- the test bed itself ---------------------------------------------------------------------------


def pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


@local_only
def test_restart_keeps_data_and_stop_leaves_no_process() -> None:
    bed = TestBed()
    with bed:
        pids = bed.pids
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
        server = bed.server
        with bed.api_client() as api:
            core = client.CoreV1Api(api)
            core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="kept")))
        bed.restart_apiserver()
        assert bed.server == server
        assert bed.pids["kube-controller-manager"] == pids["kube-controller-manager"]
        assert bed.pids["kube-apiserver"] != pids["kube-apiserver"]
        with bed.api_client() as api:
            assert client.CoreV1Api(api).read_namespaced_config_map("kept", "default").metadata is not None
        pids.update({f"restarted-{k}": v for k, v in bed.pids.items()})
        workdir = bed.workdir
    assert workdir is not None and not workdir.exists()
    assert [name for name, pid in pids.items() if not pid_gone(pid)] == []


@local_only
def test_failed_start_keeps_the_logs_and_leaves_no_process() -> None:
    bed = TestBed(extra_apiserver_args=["--no-such-flag"], controller_manager=False)
    with pytest.raises(TestBedError, match="kube-apiserver exited"):
        bed.start()
    try:
        assert bed.workdir is not None
        assert "no-such-flag" in (bed.workdir / "kube-apiserver.log").read_text()
        started = json.loads((bed.workdir / "pids.json").read_text())
        assert set(started) == {"etcd", "kube-apiserver"}
        assert [name for name, pid in started.items() if not pid_gone(pid)] == []
    finally:
        if bed.workdir is not None:
            shutil.rmtree(bed.workdir)


@local_only
def test_cli_starts_in_the_background_and_stops(tmp_path: Path) -> None:
    folder = tmp_path / "tb"
    cli = [sys.executable, "-m", "clusterop_dev.testbed"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args, "--dir", str(folder)], capture_output=True, text=True, timeout=120)

    up = run("up")
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={folder / 'kubeconfig'}" in up.stdout
    try:
        status = run("status")
        assert status.returncode == 0 and "ready=true" in status.stdout, status.stdout + status.stderr
        supervisor = int((folder / "pid").read_text())
        children = json.loads((folder / "run" / "pids.json").read_text())
        with client_from_kubeconfig(folder / "kubeconfig") as api:
            assert client.CoreV1Api(api).read_namespace("default").metadata is not None
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    assert not folder.exists()
    assert [p for p in [supervisor, *children.values()] if not pid_gone(p)] == []
    assert run("status").returncode == 1
