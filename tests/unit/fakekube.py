"""An in-memory stand-in for `clusterop.kube.Kube` with the apiserver's optimistic concurrency:
every write bumps a resourceVersion, a write carrying an older one fails with KubeConflict.
Secrets and ConfigMaps hold decoded data, as `Kube.secret` returns it."""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Callable, Mapping
from typing import Any

from clusterop.errors import KubeConflict, KubeNotFound
from clusterop.kube import SecretData


class FakeKube:
    def __init__(self) -> None:
        self.version = 0
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []  # (kind, name) in order
        self.before_write: Callable[[], None] | None = None  # runs before every write lands
        self.down = False  # the apiserver does not answer
        self.reads: list[tuple[str, str]] = []  # (kind, name) of Secret reads
        self.forgotten: list[str] = []  # Secrets whose cache entry the operator dropped

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(obj)

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("apiserver down")
        if self.before_write:
            self.before_write()

    # -- ManagerClusters --
    def add_cluster(
        self,
        ns: str,
        name: str,
        status: Mapping[str, Any] | None = None,
        spec: Mapping[str, Any] | None = None,
    ) -> str:
        obj = {
            "metadata": {"namespace": ns, "name": name, "generation": 1},
            "spec": copy.deepcopy(dict(spec or {})),
            "status": dict(status or {}),
        }
        self.objects[("mgrc", ns, name)] = obj
        return str(self._bump(obj)["metadata"]["resourceVersion"])

    def cluster(self, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects.get(("mgrc", ns, name))
        if obj is None:
            raise KubeNotFound(name)
        return copy.deepcopy(obj)

    def patch_status(
        self, ns: str, name: str, patch: Mapping[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        self._check()
        obj = self.objects.get(("mgrc", ns, name))
        if obj is None:
            raise KubeNotFound(name)
        if resource_version is not None and resource_version != obj["metadata"]["resourceVersion"]:
            raise KubeConflict(name)
        for k, v in patch.items():
            if v is None:
                obj["status"].pop(k, None)
            else:
                obj["status"][k] = copy.deepcopy(v)
        self.writes.append(("status", name))
        return self._bump(obj)

    # -- Leases --
    def lease(self, ns: str, name: str) -> dict[str, Any] | None:
        if self.down:
            raise ConnectionError("apiserver down")
        obj = self.objects.get(("lease", ns, name))
        return copy.deepcopy(obj) if obj is not None else None

    def leases(self, ns: str) -> list[dict[str, Any]]:
        if self.down:
            raise ConnectionError("apiserver down")
        return [copy.deepcopy(o) for (kind, n, _), o in sorted(self.objects.items()) if kind == "lease" and n == ns]

    def create_lease(self, ns: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        key = ("lease", ns, body["metadata"]["name"])
        if key in self.objects:
            raise KubeConflict("exists")
        self.objects[key] = copy.deepcopy(dict(body))
        self.writes.append(("lease", key[2]))
        return self._bump(self.objects[key])

    def update_lease(self, ns: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        obj = self.objects.get(("lease", ns, name))
        if obj is None:
            raise KubeNotFound(name)
        if body["metadata"].get("resourceVersion") != obj["metadata"]["resourceVersion"]:
            raise KubeConflict(name)
        self.objects[("lease", ns, name)] = obj = copy.deepcopy(dict(body))
        self.writes.append(("lease", name))
        return self._bump(obj)

    # -- Secrets and ConfigMaps --
    def put_secret(self, ns: str, name: str, data: Mapping[str, str]) -> None:
        self.objects[("secret", ns, name)] = {"metadata": {"name": name}, "data": dict(data)}
        self._bump(self.objects[("secret", ns, name)])

    def put_config_map(self, ns: str, name: str, data: Mapping[str, str]) -> None:
        self.objects[("configmap", ns, name)] = {"metadata": {"name": name}, "data": dict(data)}

    def secret(self, ns: str, name: str) -> SecretData:
        obj = self.objects.get(("secret", ns, name))
        if obj is None:
            raise KubeNotFound(name)
        self.reads.append(("secret", name))
        return SecretData(obj["metadata"]["resourceVersion"], dict(obj["data"]))

    def forget_secret(self, ns: str, name: str) -> None:
        self.forgotten.append(name)

    def config_map(self, ns: str, name: str) -> Mapping[str, str]:
        obj = self.objects.get(("configmap", ns, name))
        if obj is None:
            raise KubeNotFound(name)
        return dict(obj["data"])

    def create_key_secret(self, ns: str, name: str, key: str, owner: str) -> None:
        self.put_secret(ns, name, {key: base64.b64encode(os.urandom(16)).decode()})
        self.writes.append(("secret", name))
