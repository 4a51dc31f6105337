"""Kubernetes reads and writes outside kopf's handler cycle, with pykube-ng.

Secrets and ConfigMaps the resource points at, the status of our own resources (written by
the reconcile loop, which is a kopf daemon and so has no kopf-applied patch), and the key
Secret the operator generates when asked to. Values read from Secrets are registered with
`redact` before anything else sees them.

Secrets are cached for `secret_max_age` seconds: every pass needs the credentials and the key,
and reading both from the apiserver on every pass was most of a pass's cost (and of the
apiserver's load) with 1,000 clusters. A Secret watch (namespaced mode) drops an entry at once;
so does a manager refusing the credentials; otherwise a changed Secret is seen within
`secret_max_age`. A missing Secret is never cached.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pykube
from pykube.http import KubernetesHTTPAdapter

from . import errors, redact
from .model import GROUP, PLURAL, VERSION

API_VERSION = f"{GROUP}/{VERSION}"
LEASE_API = "coordination.k8s.io/v1"
CRD_API = "apiextensions.k8s.io/v1"
CRD_NAME = f"{PLURAL}.{GROUP}"
SECRET_MAX_AGE = 300.0


@dataclass(frozen=True)
class SecretData:
    resource_version: str
    data: Mapping[str, str]  # decoded values


class Kube:
    def __init__(self, api: pykube.HTTPClient, secret_max_age: float = SECRET_MAX_AGE) -> None:
        self.api = api
        self.secret_max_age = secret_max_age
        #: (namespace, name) -> (monotonic time read, data)
        self._secrets: dict[tuple[str, str], tuple[float, SecretData]] = {}
        self._secrets_lock = threading.Lock()
        # pykube's adapter carries the kubeconfig's TLS and auth: keep it, with a larger pool
        # (passes run in parallel worker threads).
        adapter = KubernetesHTTPAdapter(api.config, pool_connections=4, pool_maxsize=64)
        api.session.mount("https://", adapter)
        api.session.mount("http://", adapter)
        # No proxies or .netrc from the environment (as kopf's own session): requests looked for
        # ~/.netrc on every call, 5% of the pass threads' samples at 1,000 clusters.
        api.session.trust_env = False

    @staticmethod
    def from_env(secret_max_age: float = SECRET_MAX_AGE) -> Kube:
        return Kube(pykube.HTTPClient(pykube.KubeConfig.from_env(), timeout=15), secret_max_age)

    def _call(
        self, method: str, what: str, version: str, namespace: str | None, url: str, **kwargs: Any
    ) -> dict[str, Any]:
        """One request; every failure becomes an `errors.KubeError` naming `what`, never a body."""
        try:
            response = getattr(self.api, method)(version=version, namespace=namespace, url=url, **kwargs)
        except OSError as e:  # requests' connection errors and timeouts are OSErrors
            raise errors.KubeUnreachable(
                f"{namespace}/{what}" if namespace else what, reason=type(e).__name__
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        return errors.kube_result(
            f"{namespace}/{what}" if namespace else what, response.status_code, body, redact.scrub
        )

    def _get(self, namespace: str, path: str) -> dict[str, Any]:
        return self._call("get", path, "v1", namespace, path)

    def secret(self, namespace: str, name: str) -> SecretData:
        """The Secret's decoded data: from the cache if read less than `secret_max_age` ago."""
        key = (namespace, name)
        now = time.monotonic()
        with self._secrets_lock:
            cached = self._secrets.get(key)
        if cached is not None and now - cached[0] < self.secret_max_age:
            return cached[1]
        try:
            body = self._get(namespace, f"secrets/{name}")
        except errors.KubeNotFound:
            self.forget_secret(namespace, name)
            raise
        version = str(body["metadata"].get("resourceVersion", ""))
        if cached is not None and cached[1].resource_version == version:
            found = cached[1]  # unchanged: its values are registered already
        else:
            data: dict[str, str] = {}
            for k, v in (body.get("data") or {}).items():
                try:
                    data[k] = base64.b64decode(v).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    data[k] = ""
                redact.register(data[k])
            found = SecretData(version, data)
        with self._secrets_lock:
            self._secrets[key] = (now, found)
            if len(self._secrets) > 64 and len(self._secrets) % 64 == 0:  # drop Secrets nobody asks for any more
                for k in [k for k, (t, _) in self._secrets.items() if now - t >= self.secret_max_age]:
                    del self._secrets[k]
        return found

    def forget_secret(self, namespace: str, name: str) -> None:
        """The Secret changed or went away: the next read goes to the apiserver."""
        with self._secrets_lock:
            self._secrets.pop((namespace, name), None)

    def config_map(self, namespace: str, name: str) -> Mapping[str, str]:
        body = self._get(namespace, f"configmaps/{name}")
        return dict(body.get("data") or {})

    def create_key_secret(self, namespace: str, name: str, key: str, owner: str) -> None:
        """A new Secret with base64 of 16 random bytes, as the 4.0 CLI generated keys."""
        value = base64.b64encode(secrets.token_bytes(16)).decode()
        redact.register(value)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "cloudify-cluster-operator"},
                "annotations": {"cloudify.co/generated-for": owner},
            },
            "type": "Opaque",
            "data": {key: base64.b64encode(value.encode()).decode()},
        }
        try:
            self._call("post", f"secrets/{name}", "v1", namespace, "secrets", data=json.dumps(body))
        except errors.KubeConflict:  # created meanwhile: keep theirs
            return

    def cluster(self, namespace: str, name: str) -> dict[str, Any]:
        """The ManagerCluster as the apiserver has it now (not as a watch last showed it)."""
        return self._call("get", f"{PLURAL}/{name}", API_VERSION, namespace, f"{PLURAL}/{name}")

    def patch_status(
        self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        """A merge patch of status. With `resource_version` it is a compare-and-swap: the apiserver
        applies it only if the object is still at that version, else errors.KubeConflict (409)."""
        body: dict[str, Any] = {"status": patch}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return self._call(
            "patch",
            f"{PLURAL}/{name}/status",
            API_VERSION,
            namespace,
            f"{PLURAL}/{name}/status",
            data=json.dumps(body),
            headers={"Content-Type": "application/merge-patch+json"},
        )

    # -- discovery: what kopf's one scan at start-up must find ---------------------------------

    def unserved(self) -> str | None:
        """What the apiserver does not serve yet that kopf needs when it scans at start-up, or
        None. A kube-apiserver that has just (re)started answers before its discovery lists every
        group: kopf's scan would then miss the CRDs' API (so it never watches for the
        ManagerCluster CRD) or a defined ManagerCluster CRD, and serve nothing until restarted.
        A CRD that is not defined at all is not waited for: kopf's CRD watch picks it up."""
        if not self._serves(CRD_API, "customresourcedefinitions"):
            return f"customresourcedefinitions.{CRD_API.split('/')[0]}"
        if not self.serves_managerclusters() and self._crd_defined():
            return CRD_NAME
        return None

    def serves_managerclusters(self) -> bool:
        """True when the apiserver's discovery lists the ManagerCluster resource."""
        return self._serves(API_VERSION, PLURAL)

    def _serves(self, api_version: str, plural: str) -> bool:
        try:
            body = self._call("get", f"discovery of {api_version}", api_version, None, "")
        except (errors.KubeNotFound, errors.KubeServerError):  # 404 or 503 while groups register
            return False
        return any(r.get("name") == plural for r in body.get("resources") or [])

    def _crd_defined(self) -> bool:
        """True also when RBAC does not let us list CRDs: then kopf cannot watch for it either."""
        try:
            body = self._call(
                "get",
                "customresourcedefinitions",
                CRD_API,
                None,
                "customresourcedefinitions",
                params={"fieldSelector": f"metadata.name={CRD_NAME}"},
            )
        except errors.KubeUnauthorized:
            return True
        return bool(body.get("items"))

    # -- the leader-election Lease (coordination.k8s.io/v1) ----------------------------------

    def lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("get", f"leases/{name}", LEASE_API, namespace, f"leases/{name}")
        except errors.KubeNotFound:
            return None

    def leases(self, namespace: str) -> list[dict[str, Any]]:
        """Every Lease of the namespace (the shard leases are told apart by name)."""
        return list(self._call("get", "leases", LEASE_API, namespace, "leases").get("items") or [])

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """errors.KubeConflict when another candidate created it first."""
        return self._call("post", "leases", LEASE_API, namespace, "leases", data=json.dumps(body))

    def update_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT with the body's metadata.resourceVersion: errors.KubeConflict when someone else wrote it first."""
        return self._call("put", f"leases/{name}", LEASE_API, namespace, f"leases/{name}", data=json.dumps(body))
