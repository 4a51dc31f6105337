"""Access to a cluster, the test bed's or one named by a kubeconfig (kind): kubernetes clients,
service-account tokens and token kubeconfigs. The kubernetes client is imported only when used."""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterop_dev.testbed.certs import kubeconfig, write_private
from clusterop_dev.testbed.common import TestBedError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def local_mode() -> bool:
    """True unless E2E_CLUSTER names an existing cluster (kind): then nothing local is started."""
    return os.environ.get("E2E_CLUSTER", "local") in ("", "local")


def get_json(api: ApiClient, path: str) -> Any:
    """GET a raw API path (for example /version or /openapi/v3/...) with the client's credentials."""
    method, url, headers, body, post = api.param_serialize(
        "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    response = api.call_api(method, url, header_params=headers, body=body, post_params=post)
    data: bytes = response.response.data  # RESTResponse.read() is untyped
    if response.status >= 400:
        raise TestBedError(f"GET {path}: HTTP {response.status}: {data[:500]!r}")
    return json.loads(data)


class ClusterAccess:
    """What TestBed and ExistingCluster share: a client, service-account tokens, token kubeconfigs."""

    kind: bool
    server: str
    kubeconfig: Path

    @property
    def has_controller_manager(self) -> bool:
        """Whether namespaces get deleted and owner references collected."""
        return True

    def _configuration(self) -> Any:
        raise NotImplementedError

    def ca_pem(self) -> bytes:
        raise NotImplementedError

    def api_client(self, connection_pool_maxsize: int | None = None) -> ApiClient:
        """A kubernetes ApiClient with this cluster's credentials; close it when done.

        connection_pool_maxsize: raise it for many concurrent requests (default: 5 per CPU).
        """
        from kubernetes import client

        config = self._configuration()
        if connection_pool_maxsize is not None:
            config.connection_pool_maxsize = connection_pool_maxsize
        return client.ApiClient(config)

    def create_token(self, namespace: str, service_account: str, duration: float | timedelta = 3600) -> str:
        """A bound token for an existing ServiceAccount (TokenRequest API; at least 600 s)."""
        from kubernetes import client

        seconds = int(duration.total_seconds() if isinstance(duration, timedelta) else duration)
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
        )
        with self.api_client() as api:
            answer = client.CoreV1Api(api).create_namespaced_service_account_token(service_account, namespace, request)
        if answer.status is None or not answer.status.token:
            raise TestBedError(f"TokenRequest for {namespace}/{service_account} returned no token")
        return answer.status.token

    def kubeconfig_for_token(self, token: str, path: str | os.PathLike[str]) -> Path:
        """Write a kubeconfig that authenticates with a bearer token; returns its path."""
        target = Path(path)
        ca = base64.b64encode(self.ca_pem()).decode()
        write_private(target, kubeconfig(self.server, ca, "token-user", {"token": token}))
        return target

    def token_client(self, token: str) -> ApiClient:
        """A kubernetes ApiClient that authenticates with a bearer token (close it when done)."""
        from kubernetes import client

        config = self._configuration()
        config.cert_file = None
        config.key_file = None
        config.api_key = {"BearerToken": token}
        config.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(config)


class ExistingCluster(ClusterAccess):
    """A cluster the test bed did not start (kind): the kubeconfig named by $KUBECONFIG."""

    kind = True
    audit_log: Path | None = None
    startup_seconds: float | None = None

    def __init__(self, kubeconfig: str | os.PathLike[str]) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.server = self._configuration().host

    def _configuration(self) -> Any:
        from kubernetes import client, config

        configuration = client.Configuration()
        load: Any = config.load_kube_config  # untyped
        load(config_file=str(self.kubeconfig), client_configuration=configuration)
        return configuration

    def ca_pem(self) -> bytes:
        return Path(self._configuration().ssl_ca_cert).read_bytes()

    def start(self) -> ExistingCluster:
        return self

    def stop(self, keep: bool | None = None) -> None:
        pass
