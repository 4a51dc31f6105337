"""A small typed client for the Cloudify Manager 4.0 cluster API (urllib3, under `Session`).

One method per endpoint; paths hang below the node's endpoint, which may carry a path
prefix. Errors become the types of `errors`; no response body, request body or header
ever reaches an exception text or a log line (PUT and PATCH answers carry the key).
Connections are pooled per manager by one shared `Session`.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from . import errors

API = "/api/v3/cluster"

#: Fields asked of GET /cluster: never `encryption_key`, so the key is never received.
STATE_FIELDS = ("initialized", "consul", "error", "logs")


class LogEntry(TypedDict, total=False):
    message: str
    timestamp: int
    cursor: str


class ClusterState(TypedDict, total=False):
    initialized: bool
    consul: dict[str, Any]
    error: str | None
    logs: list[LogEntry]


class ClusterNode(TypedDict):
    name: str
    host_ip: str
    online: bool
    master: bool
    initialized: bool


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(username={self.username!r}, password=<redacted>)"

    @functools.cached_property
    def header(self) -> str:
        """The Authorization header's value (Basic, as requests and the 4.0 client send it)."""
        pair = f"{self.username}:{self.password}"
        try:
            raw = pair.encode("latin-1")
        except UnicodeEncodeError:
            raw = pair.encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Connection:
    """How to reach the managers of one cluster: everything but the node's endpoint."""

    credentials: Credentials | None
    tenant: str | None = None
    verify: bool | str = True  # False, True or a CA bundle path
    timeout: tuple[float, float] = (2.0, 5.0)  # connect, read


#: Called after every request: (endpoint name, method, HTTP status or 0, seconds).
Observer = Callable[[str, str, int, float], None]


class TransportError(Exception):
    """A request got no HTTP answer; `reason` says why in a few words (never a body)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@functools.lru_cache(maxsize=65536)
def _split(endpoint: str) -> tuple[str, str, int | None, str]:
    """scheme, host, port and path prefix of a manager's endpoint (parsed once per endpoint)."""
    parts = urlsplit(endpoint)
    return parts.scheme or "http", parts.hostname or "", parts.port, parts.path.rstrip("/")


def _tls(verify: bool | str) -> dict[str, Any]:
    if verify is False:
        return {"cert_reqs": "CERT_NONE", "assert_hostname": False}
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": DEFAULT_CA_BUNDLE_PATH if verify is True else verify}


class Session:
    """Keep-alive connections pooled per manager, for the `pool_hosts` managers used last, and
    the headers every request carries (`User-Agent`).

    urllib3's pools directly, not a `requests.Session` over them: requests' own work per call
    (preparing the request, merging settings, cookies, building the response) was half of a
    manager request's CPU (1.72 against 0.85 ms on this machine), and the operator makes
    some 20 per cluster it forms and one per steady cluster per resync. A pool costs about
    7 KiB even when idle."""

    def __init__(self, pool_hosts: int = 4096, per_host: int = 4) -> None:
        self.headers: dict[str, str] = {"User-Agent": "cloudify-cluster-operator"}
        self._pools = urllib3.PoolManager(num_pools=pool_hosts, maxsize=per_host, retries=False)

    def request(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: str | None = None,
        headers: Mapping[str, str],
        timeout: tuple[float, float],
        verify: bool | str,
    ) -> tuple[int, bytes]:
        """(HTTP status, body); TransportError when no answer came (TLS, refused, timed out)."""
        scheme, host, port, prefix = _split(endpoint)
        target = prefix + path
        if query:
            target += "?" + urlencode(query)
        try:
            pool = self._pools.connection_from_host(
                host, port, scheme, pool_kwargs=_tls(verify) if scheme == "https" else None
            )
            response = pool.urlopen(
                method,
                target,
                body=body,
                headers={**self.headers, **headers},
                timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=True,
            )
        except urllib3.exceptions.SSLError as e:
            raise TransportError(f"TLS failed ({type(e).__name__})") from None
        except urllib3.exceptions.NewConnectionError as e:  # a ConnectTimeoutError too: before it
            raise TransportError(_short_reason(e)) from None
        except (urllib3.exceptions.TimeoutError, TimeoutError):
            raise TransportError("timed out") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise TransportError(_short_reason(e)) from None
        return response.status, response.data


#: file descriptors kept free of manager connections: the apiserver's (kopf's 48, pykube's 64),
#: the metrics and liveness servers, CA files, logs
FD_RESERVE = 1024


def pools_for(fd_limit: int, cap: int = 65536) -> int:
    """How many managers' pools to keep for a process allowed `fd_limit` open files. Each pool
    keeps about one connection (two for a master a forming pass asks twice at once), so half the
    budget. One process with 10,000 clusters (30,000 managers) under a limit of 20,000 ran out of
    files (`Too many open files`, managers reported unreachable) with a pool kept per manager;
    with this, the least recently used pools are closed instead."""
    return max(64, min(cap, (fd_limit - FD_RESERVE) // 2))


def make_session(pool_hosts: int = 4096, per_host: int = 4) -> Session:
    """A `Session`: see it for why it is not requests' (see `cli.main` for the sizes)."""
    return Session(pool_hosts, per_host)


def quiet_insecure_warnings() -> None:
    """spec.tls.insecureSkipVerify is an explicit choice of the user: said once in the docs, not per request."""
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


class ManagerClient:
    """The cluster API of one manager node."""

    def __init__(
        self,
        endpoint: str,
        conn: Connection,
        session: Session,
        observer: Observer | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._conn = conn
        self._session = session
        self._observer = observer

    # -- endpoints -------------------------------------------------------------------------

    def state(self, since: str | None = None, fields: Sequence[str] = STATE_FIELDS) -> ClusterState:
        """GET /cluster with `_include` (never the key) and `since` for new logs only."""
        params = {"_include": ",".join(fields)}
        if since:
            params["since"] = since
        body = self._call("GET", API, "cluster", params=params)
        return _as_state(body)

    def nodes(self) -> list[ClusterNode]:
        """GET /cluster/nodes: the members as this (master) node sees them."""
        body = self._call("GET", f"{API}/nodes", "nodes")
        items = body.get("items")
        if not isinstance(items, list):
            raise errors.BadResponse(f"{self.endpoint}: node list without items")
        return [_as_node(item) for item in items]

    def start(self, host_ip: str, node_name: str, encryption_key: str) -> ClusterState:
        """PUT /cluster without join_addrs: bootstrap a new cluster on this node."""
        body = {"host_ip": host_ip, "node_name": node_name, "encryption_key": encryption_key}
        return _as_state(self._call("PUT", API, "cluster", json_body=body))

    def join(self, host_ip: str, node_name: str, encryption_key: str, join_addrs: Sequence[str]) -> ClusterState:
        """PUT /cluster with join_addrs: join the cluster of those members."""
        body = {
            "host_ip": host_ip,
            "node_name": node_name,
            "encryption_key": encryption_key,
            "join_addrs": list(join_addrs),
        }
        return _as_state(self._call("PUT", API, "cluster", json_body=body))

    def configure(self, settings: Mapping[str, Any]) -> None:
        """PATCH /cluster with arbitrary settings (sent to the master)."""
        self._call("PATCH", API, "cluster", json_body=dict(settings))

    def remove(self, node_name: str) -> None:
        """DELETE /cluster/nodes/{name} (sent to the master)."""
        self._call("DELETE", f"{API}/nodes/{quote(node_name, safe='')}", "node")

    # -- transport -------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        name: str,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(json_body)
        if self._conn.tenant:
            headers["Tenant"] = self._conn.tenant
        if self._conn.credentials is not None:
            headers["Authorization"] = self._conn.credentials.header
        started = time.monotonic()
        status = 0
        try:
            status, content = self._session.request(
                method,
                self.endpoint,
                path,
                query=params,
                body=data,
                headers=headers,
                timeout=self._conn.timeout,
                verify=self._conn.verify,
            )
        except TransportError as e:
            raise errors.Unreachable(f"{self.endpoint}: {e.reason}") from None
        finally:
            if self._observer is not None:
                self._observer(name, method, status, time.monotonic() - started)
        try:
            body = json.loads(content) if content else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if status >= 500:
                raise errors.ServerError(status, None, "answer is not JSON")
            raise errors.BadResponse(f"{self.endpoint}: HTTP {status} with a body that is not a JSON object")
        if status != 200:
            raise errors.error_for(status, body)
        return body


def _short_reason(e: Exception) -> str:
    text = str(e).lower()
    for needle, reason in (
        ("refused", "connection refused"),
        ("reset", "connection reset"),
        ("aborted", "connection aborted"),
        ("name or service", "name not resolved"),
    ):
        if needle in text:
            return reason
    return type(e).__name__


def _as_state(body: Mapping[str, Any]) -> ClusterState:
    state: ClusterState = {"initialized": bool(body.get("initialized", False))}
    error = body.get("error")
    state["error"] = str(error) if error else None
    logs = body.get("logs")
    if isinstance(logs, list):
        state["logs"] = [
            LogEntry(
                message=str(entry.get("message", "")),
                timestamp=int(entry.get("timestamp") or 0),
                cursor=str(entry.get("cursor", "")),
            )
            for entry in logs
            if isinstance(entry, dict)
        ]
    consul = body.get("consul")
    if isinstance(consul, dict):
        state["consul"] = consul
    return state


def _as_node(item: Any) -> ClusterNode:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise errors.BadResponse("node list item without a name")
    return ClusterNode(
        name=item["name"],
        host_ip=str(item.get("host_ip", "")),
        online=bool(item.get("online", False)),
        master=bool(item.get("master", False)),
        initialized=bool(item.get("initialized", False)),
    )
