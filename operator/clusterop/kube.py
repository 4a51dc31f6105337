"""Kubernetes reads and writes outside kopf's handler cycle, with pykube-ng.

Secrets and ConfigMaps the resource points at, the status of our own resources (written by
the reconcile loop, which is a kopf daemon and so has no kopf-applied patch), and the key
Secret the operator generates when asked to. Values read from Secrets are registered with
`redact` before anything else sees them.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pykube
import requests
from pykube.http import KubernetesHTTPAdapter

from . import redact
from .model import GROUP, PLURAL, VERSION

API_VERSION = f"{GROUP}/{VERSION}"


class NotFoundError(Exception):
    """The referenced object does not exist."""


@dataclass(frozen=True)
class SecretData:
    resource_version: str
    data: Mapping[str, str]  # decoded values


class Kube:
    def __init__(self, api: pykube.HTTPClient) -> None:
        self.api = api
        # pykube's adapter carries the kubeconfig's TLS and auth: keep it, with a larger pool
        # (passes run in parallel worker threads).
        adapter = KubernetesHTTPAdapter(api.config, pool_connections=4, pool_maxsize=64)
        api.session.mount("https://", adapter)
        api.session.mount("http://", adapter)

    @staticmethod
    def from_env() -> Kube:
        return Kube(pykube.HTTPClient(pykube.KubeConfig.from_env(), timeout=15))

    def _get(self, namespace: str, path: str) -> dict[str, Any]:
        response: requests.Response = self.api.get(version="v1", namespace=namespace, url=path)
        if response.status_code == 404:
            raise NotFoundError(path)
        self.api.raise_for_status(response)
        body: dict[str, Any] = response.json()
        return body

    def secret(self, namespace: str, name: str) -> SecretData:
        body = self._get(namespace, f"secrets/{name}")
        data: dict[str, str] = {}
        for k, v in (body.get("data") or {}).items():
            try:
                data[k] = base64.b64decode(v).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                data[k] = ""
            redact.register(data[k])
        return SecretData(str(body["metadata"].get("resourceVersion", "")), data)

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
        response = self.api.post(version="v1", namespace=namespace, url="secrets", data=json.dumps(body))
        if response.status_code == 409:  # created meanwhile: keep theirs
            return
        self.api.raise_for_status(response)

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        response = self.api.patch(
            version=API_VERSION,
            namespace=namespace,
            url=f"{PLURAL}/{name}/status",
            data=json.dumps({"status": patch}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if response.status_code == 404:
            raise NotFoundError(f"{PLURAL}/{name}")
        self.api.raise_for_status(response)
        body: dict[str, Any] = response.json()
        return body
