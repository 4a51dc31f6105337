"""Every Kubernetes failure becomes a type of the error tree (errors.Kube*), for the operator's
Kube client and for the kubectl plugin: pykube over real HTTP against a loopback server that
answers as the apiserver does (a Status object), or with what a broken proxy sends."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pykube
import pytest

from clusterop import errors, redact
from clusterop.kube import Kube
from clusterop.plugin.api import Api, PluginError

SECRET_VALUE = "hunter2-very-secret-value"


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


class Apiserver:
    """Answers each path with the (status, body) set for it; 200 {} otherwise."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {}
        answers = self.answers

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                code, body = answers.get(self.path.split("?")[0].rstrip("/"), (200, {}))
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/html" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_PATCH = _answer

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def config(self) -> dict[str, Any]:
        return kubeconfig(self.url)


def kubeconfig(server: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
        "current-context": "x",
    }


@pytest.fixture
def apiserver() -> Iterator[Apiserver]:
    a = Apiserver()
    yield a
    a.server.shutdown()
    a.server.server_close()


def kube_for(config: dict[str, Any]) -> Kube:
    return Kube(pykube.HTTPClient(pykube.KubeConfig(config), timeout=5))


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed


SECRET = "/api/v1/namespaces/ns/secrets/creds"
STATUS = "/apis/cloudify.co/v1alpha1/namespaces/ns/managerclusters/mc/status"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/op"


def test_missing_secret_is_kube_not_found(apiserver: Apiserver) -> None:
    apiserver.answers[SECRET] = (404, status(404, "NotFound", 'secrets "creds" not found'))
    with pytest.raises(errors.KubeNotFound) as e:
        kube_for(apiserver.config()).secret("ns", "creds")
    assert (e.value.status, e.value.reason, e.value.what) == (404, "NotFound", "ns/secrets/creds")
    assert str(e.value) == 'ns/secrets/creds: HTTP 404 NotFound: secrets "creds" not found'
    assert isinstance(e.value, errors.OperatorError)


def test_stale_status_write_is_kube_conflict(apiserver: Apiserver) -> None:
    apiserver.answers[STATUS] = (409, status(409, "Conflict", "the object has been modified"))
    with pytest.raises(errors.KubeConflict) as e:
        kube_for(apiserver.config()).patch_status("ns", "mc", {"phase": "Ready"}, resource_version="7")
    assert e.value.status == 409 and "the object has been modified" in str(e.value)


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        (401, "Unauthorized", errors.KubeUnauthorized),
        (403, "Forbidden", errors.KubeUnauthorized),
        (400, "BadRequest", errors.KubeInvalid),
        (422, "Invalid", errors.KubeInvalid),
        (429, "TooManyRequests", errors.KubeServerError),
        (500, "InternalError", errors.KubeServerError),
        (503, "ServiceUnavailable", errors.KubeServerError),
        (405, "MethodNotAllowed", errors.KubeError),
    ],
)
def test_each_status_code_has_its_type(apiserver: Apiserver, code: int, reason: str, kind: type) -> None:
    apiserver.answers[SECRET] = (code, status(code, reason, f"said {code}"))
    with pytest.raises(errors.KubeError) as e:
        kube_for(apiserver.config()).secret("ns", "creds")
    assert type(e.value) is kind
    assert (e.value.status, e.value.reason, e.value.message) == (code, reason, f"said {code}")


def test_a_body_that_is_not_a_status_never_reaches_the_error(apiserver: Apiserver) -> None:
    """A proxy's 502 page, or any JSON that is not a Status (a Secret's body holds its data)."""
    apiserver.answers[SECRET] = (502, "<html>bad gateway " + SECRET_VALUE + "</html>")
    with pytest.raises(errors.KubeServerError) as e:
        kube_for(apiserver.config()).secret("ns", "creds")
    assert str(e.value) == "ns/secrets/creds: HTTP 502"
    apiserver.answers[SECRET] = (500, {"kind": "Secret", "data": {"password": SECRET_VALUE}, "message": SECRET_VALUE})
    with pytest.raises(errors.KubeServerError) as e:
        kube_for(apiserver.config()).secret("ns", "creds")
    assert SECRET_VALUE not in str(e.value) and e.value.message == ""


def test_a_refused_value_quoted_by_the_apiserver_is_redacted(apiserver: Apiserver) -> None:
    redact.register(SECRET_VALUE)
    apiserver.answers[STATUS] = (422, status(422, "Invalid", f'status.phase: Invalid value: "{SECRET_VALUE}"'))
    with pytest.raises(errors.KubeInvalid) as e:
        kube_for(apiserver.config()).patch_status("ns", "mc", {"phase": "x"})
    assert SECRET_VALUE not in str(e.value) and redact.MASK in e.value.message


def test_an_apiserver_nobody_answers_is_kube_unreachable() -> None:
    with pytest.raises(errors.KubeUnreachable) as e:
        kube_for(kubeconfig(closed_port_url())).cluster("ns", "mc")
    assert e.value.status == 0 and e.value.reason == "ConnectionError"


def test_a_success_that_is_not_json_is_a_kube_error(apiserver: Apiserver) -> None:
    apiserver.answers["/apis/cloudify.co/v1alpha1/namespaces/ns/managerclusters/mc"] = (200, "<html>login</html>")
    with pytest.raises(errors.KubeError) as e:
        kube_for(apiserver.config()).cluster("ns", "mc")
    assert type(e.value) is errors.KubeError and "not a JSON object" in str(e.value)


def test_expected_answers_are_results_not_errors(apiserver: Apiserver) -> None:
    """No Lease yet is None; a key Secret created meanwhile by someone else is kept."""
    apiserver.answers[LEASE] = (404, status(404, "NotFound", 'leases.coordination.k8s.io "op" not found'))
    apiserver.answers["/api/v1/namespaces/ns/secrets"] = (409, status(409, "AlreadyExists", "already exists"))
    k = kube_for(apiserver.config())
    assert k.lease("ns", "op") is None
    k.create_key_secret("ns", "key", "encryption_key", owner="mc")  # no error
    apiserver.answers[LEASE] = (403, status(403, "Forbidden", "cannot get leases"))
    with pytest.raises(errors.KubeUnauthorized):
        k.lease("ns", "op")


# -- the kubectl plugin: the same tree, then one line for a person ---------------------------

MC = "/apis/cloudify.co/v1alpha1/namespaces/ns/managerclusters/mc"


def plugin_for(config: dict[str, Any], tmp_path: Path) -> Api:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    return Api(kubeconfig=str(path), timeout=5)


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ((401, status(401, "Unauthorized", "Unauthorized")), "not logged in to http://127.0.0.1:"),
        ((403, status(403, "Forbidden", "user x cannot get managerclusters")), "no access: user x cannot get"),
        ((404, status(404, "NotFound", "not found")), "the ManagerCluster CRD is not installed on"),
        ((500, "<html>oops</html>"), 'managercluster "mc" in namespace "ns": 500'),
    ],
)
def test_plugin_errors_come_from_the_tree(
    apiserver: Apiserver, tmp_path: Path, answer: tuple[int, Any], said: str
) -> None:
    apiserver.answers[MC] = answer
    apiserver.answers["/apis/cloudify.co/v1alpha1"] = (404, status(404, "NotFound", "no such group"))
    with pytest.raises(PluginError) as e:
        plugin_for(apiserver.config(), tmp_path).get("ns", "mc")
    assert said in str(e.value) and "oops" not in str(e.value)


def test_plugin_names_the_object_when_the_crd_is_there(apiserver: Apiserver, tmp_path: Path) -> None:
    apiserver.answers[MC] = (404, status(404, "NotFound", "not found"))
    apiserver.answers["/apis/cloudify.co/v1alpha1"] = (200, {"resources": [{"name": "managerclusters"}]})
    with pytest.raises(PluginError, match=r'^managercluster "mc" in namespace "ns" not found$'):
        plugin_for(apiserver.config(), tmp_path).get("ns", "mc")


def test_plugin_says_the_apiserver_is_unreachable(tmp_path: Path) -> None:
    url = closed_port_url()
    with pytest.raises(PluginError, match=f"^cannot reach the Kubernetes API at {url}: ConnectionError$"):
        plugin_for(kubeconfig(url), tmp_path).get("ns", "mc")


# -- discovery at start-up: what kopf's one scan must find (Kube.unserved) -------------------

CRD_API = "/apis/apiextensions.k8s.io/v1"
OUR_API = "/apis/cloudify.co/v1alpha1"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def discovery(*plurals: str) -> tuple[int, dict[str, Any]]:
    return 200, {"kind": "APIResourceList", "resources": [{"name": p} for p in plurals]}


def serve_all(apiserver: Apiserver) -> None:
    apiserver.answers[CRD_API] = discovery("customresourcedefinitions", "customresourcedefinitions/status")
    apiserver.answers[OUR_API] = discovery("managerclusters", "managerclusters/status")
    apiserver.answers[CRDS] = (200, {"kind": "CustomResourceDefinitionList", "items": [{"kind": "x"}]})


def test_unserved_names_what_a_just_started_apiserver_does_not_list_yet(apiserver: Apiserver) -> None:
    k = kube_for(apiserver.config())
    serve_all(apiserver)
    assert k.unserved() is None
    apiserver.answers[CRD_API] = (503, status(503, "ServiceUnavailable", "the server is currently unable"))
    assert k.unserved() == "customresourcedefinitions.apiextensions.k8s.io"
    apiserver.answers[CRD_API] = discovery("customresourcedefinitions/status")
    assert k.unserved() == "customresourcedefinitions.apiextensions.k8s.io"
    serve_all(apiserver)
    apiserver.answers[OUR_API] = (404, status(404, "NotFound", "the server could not find the requested resource"))
    assert k.unserved() == "managerclusters.cloudify.co"  # defined, not served yet: wait
    apiserver.answers[CRDS] = (403, status(403, "Forbidden", "cannot list customresourcedefinitions"))
    assert k.unserved() == "managerclusters.cloudify.co"  # cannot tell: kopf could not watch for it either
    apiserver.answers[CRDS] = (200, {"kind": "CustomResourceDefinitionList", "items": []})
    assert k.unserved() is None  # not defined at all: kopf's CRD watch picks it up when it is


def test_the_startup_waits_until_the_apiserver_serves_the_crd(apiserver: Apiserver) -> None:
    """The election starts after kopf's scan; a scan of a half-started apiserver would leave a
    leader that serves nothing (the chaos suite's apiserver restart as an instance started)."""
    import asyncio

    from clusterop.handlers import until_served

    k = kube_for(apiserver.config())
    serve_all(apiserver)
    apiserver.answers[OUR_API] = (404, status(404, "NotFound", "not found"))
    served = threading.Event()

    def later() -> None:
        serve_all(apiserver)
        served.set()

    threading.Timer(0.3, later).start()
    asyncio.run(asyncio.wait_for(until_served(k, first=0.02, longest=0.05), timeout=10))
    assert served.is_set()
