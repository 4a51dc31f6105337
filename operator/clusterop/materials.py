"""A cluster's materials: its credentials, encryption key and TLS CA, read from Secrets and
ConfigMaps and checked before any manager is called (bad input is an InvalidSpec, never a call).

The key stays in memory only (never in a file, a log, an Event or status). A CA certificate
becomes a file because `requests` verifies against a path: `CaFiles` keeps one file per
distinct certificate, shared by the clusters that name it, and deletes it when the last of them
lets go (`release`, when a cluster's loop ends), and everything at `close` or at exit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from . import errors
from .client import Connection, Credentials
from .errors import InvalidSpec, Refusal
from .kube import Kube
from .model import ClusterSpec, NodeKind, Observed

ClusterKey = tuple[str, str]  # namespace, name


class CaFiles:
    """CA bundles on disk for as long as a cluster uses them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._finalizer: Callable[[], Any] | None = None  # removes the folder, once
        self._used_by: dict[ClusterKey, str] = {}  # cluster -> the path it verifies against

    @property
    def paths(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._used_by.values())

    def path_for(self, cluster: ClusterKey, pem: str) -> str:
        """The file holding `pem` (written once), now used by `cluster` (instead of any other)."""
        with self._lock:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="clusterop-ca-")
                self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)  # also at exit
            path = os.path.join(self._dir, hashlib.sha256(pem.encode()).hexdigest()[:16] + ".pem")
            if not os.path.exists(path):
                with open(path, "w") as f:
                    f.write(pem)
            before = self._used_by.get(cluster)
            self._used_by[cluster] = path
            if before is not None and before != path:
                self._drop_unused(before)
            return path

    def release(self, cluster: ClusterKey) -> None:
        """`cluster` verifies against no file any more (it went away, or names no CA now)."""
        with self._lock:
            path = self._used_by.pop(cluster, None)
            if path is not None:
                self._drop_unused(path)

    def close(self) -> None:
        """Every file and the folder, now."""
        with self._lock:
            self._used_by.clear()
            if self._finalizer is not None:
                self._finalizer()
            self._dir = self._finalizer = None

    def _drop_unused(self, path: str) -> None:
        if path not in self._used_by.values():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


class Materials:
    """Reads and checks what a cluster names in Kubernetes; the one place for Secrets and TLS."""

    def __init__(self, kube: Kube, request_timeout: tuple[float, float]) -> None:
        self.kube = kube
        self.request_timeout = request_timeout
        self.ca_files = CaFiles()

    def load(self, cluster: ClusterKey, spec: ClusterSpec) -> tuple[Connection, str]:
        """The connection to the managers and the encryption key, or InvalidSpec."""
        ns, name = cluster
        creds = self._secret(ns, spec.credentials_secret, "credentialsSecretRef")
        username, password = creds.get("username", ""), creds.get("password", "")
        if not username or not password:
            raise InvalidSpec(
                Refusal.CREDENTIALS_INVALID,
                f"Secret {spec.credentials_secret} must hold non-empty keys username and password",
            )
        key = self._key(ns, name, spec)
        conn = Connection(
            credentials=Credentials(username, password),
            tenant=spec.tenant,
            verify=self._verify(cluster, spec),
            timeout=self.request_timeout,
        )
        return conn, key

    def observed(self, cluster: ClusterKey, spec: ClusterSpec, seen: Observed) -> None:
        """The managers refused the credentials: the next pass reads the Secret afresh (it may be fixed)."""
        if any(n.kind is NodeKind.UNAUTHORIZED for n in seen.nodes.values()):
            self.kube.forget_secret(cluster[0], spec.credentials_secret)

    def forget(self, cluster: ClusterKey) -> None:
        """The cluster went away: its CA file goes too, unless another cluster uses it."""
        self.ca_files.release(cluster)

    def close(self) -> None:
        self.ca_files.close()

    def _key(self, ns: str, name: str, spec: ClusterSpec) -> str:
        try:
            data = self._secret(ns, spec.key_ref.name, "encryptionKeySecretRef")
        except InvalidSpec:
            if not spec.generate_key:
                raise
            self.kube.create_key_secret(ns, spec.key_ref.name, spec.key_ref.key, owner=name)
            data = self._secret(ns, spec.key_ref.name, "encryptionKeySecretRef")
        key = data.get(spec.key_ref.key)
        if key is None:
            raise InvalidSpec(
                Refusal.SECRET_KEY_MISSING,
                f"Secret {spec.key_ref.name} has no key {spec.key_ref.key!r} (encryptionKeySecretRef)",
            )
        key = key.strip()
        try:
            valid = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise InvalidSpec(
                Refusal.ENCRYPTION_KEY_INVALID,
                f"Secret {spec.key_ref.name} key {spec.key_ref.key!r} must be base64 of exactly 16 bytes",
            )
        return key

    def _secret(self, ns: str, secret: str, field_name: str) -> Mapping[str, str]:
        try:
            return self.kube.secret(ns, secret).data
        except errors.KubeNotFound:
            raise InvalidSpec(
                Refusal.SECRET_MISSING, f"Secret {ns}/{secret} ({field_name}) does not exist yet"
            ) from None

    def _verify(self, cluster: ClusterKey, spec: ClusterSpec) -> bool | str:
        ns = cluster[0]
        tls = spec.tls
        if tls.insecure_skip_verify or (tls.ca_secret is None and tls.ca_config_map is None):
            self.ca_files.release(cluster)
            return not tls.insecure_skip_verify
        pem: str | None = None
        if tls.ca_secret is not None:
            pem = self._secret(ns, tls.ca_secret.name, "tls.caSecretRef").get(tls.ca_secret.key)
            where = f"Secret {tls.ca_secret.name} key {tls.ca_secret.key!r}"
        else:
            assert tls.ca_config_map is not None
            try:
                pem = self.kube.config_map(ns, tls.ca_config_map.name).get(tls.ca_config_map.key)
            except errors.KubeNotFound:
                raise InvalidSpec(
                    Refusal.SECRET_MISSING,
                    f"ConfigMap {ns}/{tls.ca_config_map.name} (tls.caConfigMapRef) does not exist yet",
                ) from None
            where = f"ConfigMap {tls.ca_config_map.name} key {tls.ca_config_map.key!r}"
        if not pem or "-----BEGIN CERTIFICATE-----" not in pem:
            raise InvalidSpec(Refusal.TLS_INVALID, f"{where} must hold a PEM CA certificate")
        return self.ca_files.path_for(cluster, pem)
