"""The control API (`/control/...` on the main port): observe the simulator and inject faults.

Documented in docs/simulator.md. Answers are JSON; errors are `{"error": "..."}` with 400/404.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cloudify_manager_sim.config import parse_users
from cloudify_manager_sim.state import Cluster, NodeState

if TYPE_CHECKING:
    from cloudify_manager_sim.server import Endpoint, Simulator

PREFIX = "/control"


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")


def _number(body: dict[str, Any], name: str, default: float | None = None) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ControlError(400, f"{name} must be a non-negative number")
    return float(value)


class Control:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            body: Any = {}
            if request.method == "POST" and request.body_exists:
                try:
                    body = json.loads(await request.read() or b"{}")
                except ValueError:
                    raise ControlError(400, "body must be JSON") from None
                if not isinstance(body, dict):
                    raise ControlError(400, "body must be a JSON object")
            self.sim.registry.advance(self.sim._loop.time())
            result = await self._route(request.method, request.path, body)
            self.sim.arm()
            return _reply(result)
        except ControlError as e:
            return _reply({"error": str(e)}, e.status)

    async def _route(self, method: str, path: str, body: dict[str, Any]) -> Any:
        if not path.startswith(PREFIX + "/"):
            raise ControlError(404, f"no such control path {path}")
        parts = path[len(PREFIX) + 1 :].rstrip("/").split("/")
        sim = self.sim
        match method, parts:
            case "GET", ["health"]:
                return {"ok": True}
            case "GET", ["machines"]:
                return {"machines": [self._machine(ep) for ep in sim.endpoints.values()]}
            case "POST", ["machines"]:
                count = int(_number(body, "count", 1))
                added = await sim.add_machines(count)
                return {"machines": [self._machine(ep) for ep in added]}
            case "GET", ["clusters"]:
                return {"clusters": [self._cluster(c) for c in sim.registry.clusters.values()]}
            case "POST", ["machines", host_ip, "offline" | "online" as action]:
                endpoint = self._endpoint(host_ip)
                await sim.set_online(endpoint, action == "online")
                return self._machine(endpoint)
            case "POST", ["machines", host_ip, "latency"]:
                endpoint = self._endpoint(host_ip)
                endpoint.latency = _number(body, "seconds")
                return self._machine(endpoint)
            case "POST", ["machines", host_ip, "faults"]:
                from cloudify_manager_sim.server import FAULT_KINDS, Fault

                endpoint = self._endpoint(host_ip)
                kind = str(body.get("kind"))
                if kind not in FAULT_KINDS:
                    raise ControlError(400, f"kind must be one of {', '.join(FAULT_KINDS)}")
                count = int(_number(body, "count", 1))
                if count:
                    endpoint.faults.append(Fault(kind, count, _number(body, "hang_seconds", 30.0)))
                return self._machine(endpoint)
            case "POST", ["machines", host_ip, "fail-next"]:
                endpoint = self._endpoint(host_ip)
                op = body.get("op")
                if op not in ("start", "join"):
                    raise ControlError(400, "op must be start or join")
                endpoint.machine.fail_next[op] = str(body.get("error") or f"Injected {op} failure")
                return self._machine(endpoint)
            case "POST", ["remove"]:
                endpoint = self._endpoint(str(body.get("host_ip")))
                machine = endpoint.machine
                if machine.cluster is None or machine.state is NodeState.REMOVED:
                    raise ControlError(400, f"{machine.host_ip} is not a member of a cluster")
                sim.registry.remove(machine, sim._loop.time())
                return self._machine(endpoint)
            case "POST", ["users"]:
                try:
                    users = parse_users(str(body.get("users", "")))
                except ValueError as e:
                    raise ControlError(400, str(e)) from None
                sim.api.set_users(users)
                return {"users": [{"name": u.name, "role": u.role} for u in users]}
            case "POST", ["config"]:
                changes = {}
                for key in ("start_delay", "join_delay", "failover_delay"):
                    if key in body:
                        changes[key.removesuffix("_delay")] = _number(body, key)
                sim.registry.delays = sim.registry.delays.replace(**changes)
                delays = sim.registry.delays
                return {"start_delay": delays.start, "join_delay": delays.join, "failover_delay": delays.failover}
            case "GET", ["requests"]:
                counts = [
                    {"host_ip": ip, "method": m, "path": p, "count": n}
                    for (ip, m, p), n in sorted(sim.requests.items())
                ]
                return {"total": sim.total_requests, "counts": counts}
            case "GET", ["requests", "writes"]:
                return {"writes": list(sim.writes)}
            case "POST", ["requests", "reset"]:
                sim.writes.clear()
                sim.requests.clear()
                sim.total_requests = 0
                return {"total": 0, "counts": []}
        raise ControlError(404, f"no such control endpoint {method} {path}")

    def _endpoint(self, host_ip: str) -> Endpoint:
        endpoint = self.sim.endpoints.get(host_ip)
        if endpoint is None:
            raise ControlError(404, f"no machine with host_ip {host_ip}")
        return endpoint

    def _machine(self, endpoint: Endpoint) -> dict[str, Any]:
        machine = endpoint.machine
        return {
            "host_ip": machine.host_ip,
            "endpoint": self.sim.endpoint_url(endpoint),
            "node_name": machine.node_name,
            "state": machine.state.value,
            "online": machine.online,
            "cluster": machine.cluster.id if machine.cluster is not None else None,
            "error": machine.error,
            "latency": endpoint.latency,
            "pending_faults": sum(f.count for f in endpoint.faults),
        }

    def _cluster(self, cluster: Cluster) -> dict[str, Any]:
        master = cluster.master
        return {
            "id": cluster.id,
            "master": master.node_name if master is not None and master.state is NodeState.MASTER else None,
            "members": [
                {
                    "name": m.node_name,
                    "host_ip": m.host_ip,
                    "online": m.online,
                    "master": m is master and m.state is NodeState.MASTER,
                    "initialized": m.initialized,
                    "removed": m.state is NodeState.REMOVED,
                    "removed_seq": m.removed_seq,
                }
                for m in cluster.members
            ],
            "settings": cluster.settings,
            "key_set": bool(cluster.key),
            "bootstraps": cluster.bootstraps,
        }
