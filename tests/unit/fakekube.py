"""An in-memory stand-in for `clusterop.kube.Kube` with the apiserver's optimistic concurrency:
every write bumps a resourceVersion, a write carrying an older one fails with ConflictError."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from clusterop.kube import ConflictError, NotFoundError


class FakeKube:
    def __init__(self) -> None:
        self.version = 0
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []  # (kind, name) in order
        self.before_write: Callable[[], None] | None = None  # runs before every write lands
        self.down = False  # the apiserver does not answer

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
    def add_cluster(self, ns: str, name: str, status: Mapping[str, Any] | None = None) -> str:
        obj = {"metadata": {"namespace": ns, "name": name}, "spec": {}, "status": dict(status or {})}
        self.objects[("mgrc", ns, name)] = obj
        return str(self._bump(obj)["metadata"]["resourceVersion"])

    def cluster(self, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects.get(("mgrc", ns, name))
        if obj is None:
            raise NotFoundError(name)
        return copy.deepcopy(obj)

    def patch_status(
        self, ns: str, name: str, patch: Mapping[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        self._check()
        obj = self.objects.get(("mgrc", ns, name))
        if obj is None:
            raise NotFoundError(name)
        if resource_version is not None and resource_version != obj["metadata"]["resourceVersion"]:
            raise ConflictError(name)
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

    def create_lease(self, ns: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        key = ("lease", ns, body["metadata"]["name"])
        if key in self.objects:
            raise ConflictError("exists")
        self.objects[key] = copy.deepcopy(dict(body))
        self.writes.append(("lease", key[2]))
        return self._bump(self.objects[key])

    def update_lease(self, ns: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        obj = self.objects.get(("lease", ns, name))
        if obj is None:
            raise NotFoundError(name)
        if body["metadata"].get("resourceVersion") != obj["metadata"]["resourceVersion"]:
            raise ConflictError(name)
        self.objects[("lease", ns, name)] = obj = copy.deepcopy(dict(body))
        self.writes.append(("lease", name))
        return self._bump(obj)
