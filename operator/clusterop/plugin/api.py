"""The plugin's Kubernetes calls, with pykube-ng and the kubeconfig kubectl uses.

Every failure becomes a PluginError whose text is one line a person can act on: no such object,
no CRD installed, no access (403), not logged in (401), API server unreachable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import pykube

from .. import errors
from ..model import GROUP, PAUSE_ANNOTATION, PLURAL, VERSION

API_VERSION = f"{GROUP}/{VERSION}"


class PluginError(Exception):
    """A one-line message for the person at the terminal; the exit code is non-zero."""


class Api:
    def __init__(self, kubeconfig: str | None = None, context: str | None = None, timeout: float = 10.0) -> None:
        try:
            config = pykube.KubeConfig.from_file(kubeconfig) if kubeconfig else pykube.KubeConfig.from_env()
            if context:
                config.set_current_context(context)
        except (OSError, KeyError, pykube.exceptions.PyKubeError) as e:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise PluginError(f"cannot load the kubeconfig ({where}): {e}") from None
        self.http = pykube.HTTPClient(config, timeout=timeout)
        self.server = str(config.cluster.get("server", "?"))

    @property
    def default_namespace(self) -> str:
        return str(self.http.config.namespace or "default")

    def _call(self, method: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return self._request(method, what, **kwargs)
        except errors.KubeUnreachable as e:
            raise PluginError(f"cannot reach the Kubernetes API at {self.server}: {e.reason}") from None
        except errors.KubeUnauthorized as e:
            if e.status == 401:
                raise PluginError(
                    f"not logged in to {self.server} (401 Unauthorized): check your kubeconfig credentials"
                ) from None
            raise PluginError(f"no access: {e.message or e.reason or 'HTTP 403'}") from None
        except errors.KubeNotFound:
            if not self._crd_installed():
                raise PluginError(
                    f"the ManagerCluster CRD is not installed on {self.server}: "
                    "kubectl apply -f crds/ (or install the Helm chart)"
                ) from None
            raise PluginError(f"{what} not found") from None
        except errors.KubeError as e:
            raise PluginError(f"{what}: {e.status} {e.message or e.reason}".rstrip()) from None

    def _request(self, method: str, what: str, **kwargs: Any) -> dict[str, Any]:
        """One request; every failure an `errors.KubeError` (the operator's error tree)."""
        try:
            response = getattr(self.http, method)(version=API_VERSION, **kwargs)
        except OSError as e:  # requests' connection errors and timeouts are OSErrors
            raise errors.KubeUnreachable(what, reason=type(e).__name__) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        return errors.kube_result(what, response.status_code, body)

    def _crd_installed(self) -> bool:
        try:
            resources = self._request("get", "the API group", url="").get("resources") or []
        except errors.KubeUnreachable:
            return True  # cannot tell: say "not found", which is what the server said
        except errors.KubeError:
            return False
        return any(r.get("name") == PLURAL for r in resources)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(
            "get", f'managercluster "{name}" in namespace "{namespace}"', namespace=namespace, url=f"{PLURAL}/{name}"
        )

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        """ManagerClusters of one namespace, or of all (namespace None)."""
        where = f'namespace "{namespace}"' if namespace else "any namespace"
        kwargs: dict[str, Any] = {"url": PLURAL}
        if namespace:
            kwargs["namespace"] = namespace
        body = self._call("get", f"managerclusters in {where}", **kwargs)
        return list(body.get("items") or [])

    def find(self, name: str) -> dict[str, Any]:
        """The one ManagerCluster of this name in any namespace (-A NAME)."""
        found = [o for o in self.list(None) if o.get("metadata", {}).get("name") == name]
        if not found:
            raise PluginError(f'managercluster "{name}" not found in any namespace')
        if len(found) > 1:
            spaces = ", ".join(sorted(o["metadata"]["namespace"] for o in found))
            raise PluginError(f'managercluster "{name}" exists in several namespaces ({spaces}): pick one with -n')
        return found[0]

    def set_paused(self, namespace: str, name: str, paused: bool) -> dict[str, Any]:
        patch: Mapping[str, Any] = {"metadata": {"annotations": {PAUSE_ANNOTATION: "true" if paused else None}}}
        return self._call(
            "patch",
            f'managercluster "{name}" in namespace "{namespace}"',
            namespace=namespace,
            url=f"{PLURAL}/{name}",
            data=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        )
