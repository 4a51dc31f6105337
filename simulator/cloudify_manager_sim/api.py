"""The Cloudify Manager 4.0 cluster REST API over `state.Registry`: pure request -> reply.

Authentication, the node gate (replica / removed), content-type and body validation,
`_include` and `since`, and routing. No sockets and no clock: the server passes `now`.
"""

from __future__ import annotations

import base64
import binascii
import json
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cloudify_manager_sim.config import Behaviour, User
from cloudify_manager_sim.state import BUSY, CLUSTERED, Cluster, Machine, NodeState, Registry, parse_cursor

API_ROOT = "/api/v3/cluster"
NODES = API_ROOT + "/nodes"
STATE_FIELDS = ("initialized", "encryption_key", "consul", "error", "logs")
NODE_FIELDS = ("initialized", "online", "master", "host_ip", "name")
NO_AUTH = "User unauthorized: No authentication info provided"
ALREADY_CLUSTERED = "This manager machine is already part of a Cloudify Manager cluster"
BUSY_MESSAGE = "Cluster configuration is already in progress on this manager machine"
NOT_MASTER = "This node is not the Cloudify Manager cluster master"
REMOVED = "This node was removed from the Cloudify Manager cluster"
# Python 2 type names, as the 4.0 manager (Python 2.7) printed them.
PY2_TYPES = {str: "unicode", int: "int", float: "float", bool: "bool", list: "list", dict: "dict"}


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str  # below the machine's endpoint, without query string
    query: Mapping[str, str]
    authorization: str | None
    content_type: str | None  # the raw Content-Type header
    body: bytes = b""


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None
    raw: bytes | None = None  # a non-JSON body (the start glitch's 502 page)
    headers: Mapping[str, str] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def reply(self) -> Reply:
        tb = "Traceback (most recent call last):\n  (simulated)\n" + f"{self.code}: {self.message}\n"
        return Reply(self.status, {"message": self.message, "error_code": self.code, "server_traceback": tb})


def internal_error(exc: BaseException) -> Reply:
    return Reply(
        500,
        {
            "message": f"Internal error: {exc!r}",
            "error_code": "internal_server_error",
            "server_traceback": "".join(traceback.format_exception(exc)),
        },
    )


class Api:
    """Serves the Cloudify cluster endpoints of every machine in a registry."""

    def __init__(self, registry: Registry, users: tuple[User, ...], behaviour: Behaviour) -> None:
        self.registry = registry
        self.behaviour = behaviour
        self.set_users(users)

    def set_users(self, users: tuple[User, ...]) -> None:
        self.users = {u.name: u for u in users}

    def handle(self, machine: Machine, req: ApiRequest, now: float) -> Reply:
        self.registry.advance(now)
        try:
            return self._handle(machine, req, now)
        except ApiError as e:
            return e.reply()

    # -- the pipeline ---------------------------------------------------------------------------

    def _handle(self, machine: Machine, req: ApiRequest, now: float) -> Reply:
        path = req.path
        if self.behaviour.trailing_slash == "accept" and len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        route = self._route(req.method, path)
        if machine.state is NodeState.INITIALIZING and machine.glitches_left > 0:
            machine.glitches_left -= 1
            page = b"<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"
            return Reply(502, raw=page, headers={"Content-Type": "text/html"})
        if self.behaviour.node_gate == "before-auth":
            self._gate(machine)
        user = self._authenticate(req.authorization)
        if self.behaviour.node_gate == "after-auth":
            self._gate(machine)
        if req.method != "GET":
            self._require_admin(user, req.method)
        kind, node_id = route
        if kind == "cluster":
            if req.method == "GET":
                return self._get_state(machine, user, req.query)
            if req.method == "PUT":
                return self._put_state(machine, self._json_body(req), now)
            return self._patch_state(machine, self._json_body(req), now)
        if kind == "nodes":
            cluster = self._cluster_of(machine)
            items = [self.registry.node_view(cluster, m) for m in self.registry.listed_members(cluster)]
            fields = self._include(req.query, NODE_FIELDS)
            return Reply(200, {"items": [_select(item, fields) for item in items]})
        cluster = self._cluster_of(machine)
        assert node_id is not None
        target = cluster.find(node_id)
        if target is None or target not in self.registry.listed_members(cluster):
            raise self._not_found(f"Requested Cluster Node with ID `{node_id}` was not found")
        view = self.registry.node_view(cluster, target)
        if req.method == "DELETE":
            self.registry.remove(target, now)
        return Reply(200, _select(view, self._include(req.query, NODE_FIELDS)))

    def _route(self, method: str, path: str) -> tuple[str, str | None]:
        allowed: tuple[str, ...]
        if path == API_ROOT:
            allowed = ("GET", "PUT", "PATCH")
            kind, node_id = "cluster", None
        elif path == NODES:
            allowed = ("GET",)
            kind, node_id = "nodes", None
        elif path.startswith(NODES + "/") and "/" not in path[len(NODES) + 1 :] and path != NODES + "/":
            allowed = ("GET", "DELETE")
            kind, node_id = "node", path[len(NODES) + 1 :]
        else:
            raise ApiError(404, "not_found_error", "404: Not Found")
        if method not in allowed:
            raise ApiError(405, "method_not_allowed_error", "405: Method Not Allowed")
        return kind, node_id

    def _gate(self, machine: Machine) -> None:
        if machine.state is NodeState.REMOVED:
            raise ApiError(self.behaviour.removed_status, "removed_from_cluster", REMOVED)
        if machine.state is NodeState.REPLICA:
            raise ApiError(self.behaviour.not_master_status, "not_cluster_master", NOT_MASTER)

    def _authenticate(self, header: str | None) -> User:
        if not header:
            raise ApiError(401, "unauthorized_error", NO_AUTH)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token.strip():
            raise ApiError(401, "unauthorized_error", NO_AUTH)
        decoded = _b64decode(token.strip())
        if decoded is None or ":" not in decoded:
            raise ApiError(401, "unauthorized_error", NO_AUTH)
        username, _, password = decoded.partition(":")
        user = self.users.get(username)
        if user is None or user.password != password:
            raise ApiError(
                401, "unauthorized_error", f"User unauthorized: Authentication failed for <User username=`{username}`>"
            )
        return user

    def _require_admin(self, user: User, method: str) -> None:
        if user.role == "admin":
            return
        action = {"PUT": "cluster_start", "PATCH": "cluster_update", "DELETE": "cluster_node_remove"}[method]
        if self.behaviour.forbidden_status == 403:
            raise ApiError(
                403, "forbidden_error", f"User `{user.name}` is not permitted to perform the action {action}"
            )
        raise ApiError(
            self.behaviour.forbidden_status,
            "unauthorized_error",
            f"User unauthorized: User `{user.name}` is not permitted to perform the action {action}",
        )

    def _json_body(self, req: ApiRequest) -> Any:
        if req.content_type != "application/json":
            raise ApiError(415, "unsupported_content_type_error", "Content type must be application/json")
        try:
            return json.loads(req.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, "bad_parameters_error", "Failed to decode JSON object: " + str(e)) from None

    def _include(self, query: Mapping[str, str], model: tuple[str, ...]) -> tuple[str, ...] | None:
        raw = query.get("_include")
        if not raw:
            return None
        wanted = raw.split(",")
        illegal = [f for f in wanted if f not in model]
        if illegal:
            raise ApiError(
                400,
                "no_such_include_field_error",
                "Illegal include fields: [{}] - available fields: [{}]".format(", ".join(illegal), ", ".join(model)),
            )
        return tuple(f for f in model if f in wanted)

    def _not_found(self, message: str) -> ApiError:
        return ApiError(self.behaviour.not_found_status, "not_found_error", message)

    def _cluster_of(self, machine: Machine) -> Cluster:
        if machine.state is not NodeState.MASTER or machine.cluster is None:
            raise self._not_found("Cluster not initialized: this manager machine is not part of a cluster")
        return machine.cluster

    # -- ClusterState ---------------------------------------------------------------------------

    def _state(self, machine: Machine, user: User, query: Mapping[str, str]) -> dict[str, Any]:
        full: dict[str, Any] = {"initialized": machine.initialized}
        cluster = machine.cluster
        if machine.initialized and cluster is not None:
            if user.role == "admin":
                full["encryption_key"] = cluster.key
            leader = cluster.master
            full["consul"] = {"leader": f"{leader.registered_ip}:8300" if leader is not None else None}
        full["error"] = machine.error
        logs = machine.logs
        since = query.get("since")
        if since:
            after = parse_cursor(since)
            if after is None:
                raise ApiError(400, "bad_parameters_error", f"Invalid cursor value: {since}")
            logs = [entry for entry in logs if entry.seq > after]
        full["logs"] = [entry.as_json() for entry in logs]
        return full

    def _get_state(self, machine: Machine, user: User, query: Mapping[str, str]) -> Reply:
        fields = self._include(query, STATE_FIELDS)
        full = self._state(machine, user, query)
        if fields is None:
            fields = ("initialized", "encryption_key", "consul")
        return Reply(200, _select(full, fields))

    def _put_state(self, machine: Machine, body: Any, now: float) -> Reply:
        if not isinstance(body, dict):
            raise ApiError(400, "bad_parameters_error", "Request body must be a JSON object")
        for name in ("encryption_key", "join_addrs", "host_ip", "node_name"):
            if name not in body:
                if name == "join_addrs":
                    continue
                raise ApiError(400, "bad_parameters_error", f"Missing {name} in json request body")
            if name == "join_addrs" and not isinstance(body[name], list):
                raise ApiError(
                    400,
                    "bad_parameters_error",
                    f"join_addrs parameter is expected to be of type list but is of type {_py2_type(body[name])}",
                )
        if machine.state in CLUSTERED or machine.state in BUSY:
            if self.behaviour.put_on_initialized == "ignore":
                return Reply(200, {"initialized": machine.initialized})
            message = ALREADY_CLUSTERED if machine.state in CLUSTERED else BUSY_MESSAGE
            raise ApiError(400, "bad_parameters_error", message)
        if "join_addrs" in body:
            self.registry.join(machine, body, body["join_addrs"], now)
        else:
            self.registry.start(machine, body, now)
        return Reply(200, {"initialized": False})

    def _patch_state(self, machine: Machine, body: Any, now: float) -> Reply:
        if not isinstance(body, dict):
            raise ApiError(400, "bad_parameters_error", "Request body must be a JSON object")
        cluster = self._cluster_of(machine)
        target: Machine | None = None
        if "master" in body:
            name = body["master"]
            target = cluster.find(name) if isinstance(name, str) else None
            if target is None or target.state not in CLUSTERED:
                raise self._not_found(f"Requested Cluster Node with ID `{name}` was not found")
            if not target.online:
                raise ApiError(400, "bad_parameters_error", f"Cannot make node {name} the master: it is offline")
        cluster.settings.update({k: v for k, v in body.items() if k != "master"})
        if target is not None:
            self.registry.set_master(cluster, target, now)
        self.registry.log(machine, "Cluster configuration updated: " + ", ".join(sorted(body)))
        return Reply(200, {"initialized": True, "error": machine.error, "encryption_key": cluster.key})


def _select(full: dict[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    if fields is None:
        return full
    return {k: full[k] for k in fields if k in full}


def _py2_type(value: Any) -> str:
    if value is None:
        return "NoneType"
    return PY2_TYPES.get(type(value), type(value).__name__)


def _b64decode(token: str) -> str | None:
    padded = token + "=" * (-len(token) % 4)
    for altchars in (None, b"-_"):  # standard, then URL-safe alphabet
        try:
            return base64.b64decode(padded.encode("ascii"), altchars=altchars, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeError):
            continue
    return None
