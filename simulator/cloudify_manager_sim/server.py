"""Sockets: one aiohttp low-level server, one listening socket per machine, plus the control port.

Everything network-shaped lives here: ports, taking a machine offline (listener and open
connections closed), latency, injected faults and the request log. Semantics are delegated
to `api.Api` (Cloudify endpoints) and `control.Control` (the control API).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import socket
import ssl
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from cloudify_manager_sim.api import Api, ApiError, ApiRequest, Reply, internal_error
from cloudify_manager_sim.config import Options
from cloudify_manager_sim.state import Machine, Registry

FaultKind = Literal["500", "reset", "reset-after", "hang", "badjson"]
FAULT_KINDS: tuple[FaultKind, ...] = ("500", "reset", "reset-after", "hang", "badjson")


@dataclass(slots=True)
class Fault:
    kind: FaultKind
    count: int
    hang_seconds: float = 30.0


@dataclass(eq=False, slots=True)
class Endpoint:
    """The network side of one machine."""

    machine: Machine
    port: int
    server: asyncio.Server | None = None
    transports: set[asyncio.Transport] = field(default_factory=set)
    latency: float = 0.0
    faults: list[Fault] = field(default_factory=list)

    def take_fault(self) -> Fault | None:
        if not self.faults:
            return None
        fault = self.faults[0]
        fault.count -= 1
        if fault.count <= 0:
            self.faults.pop(0)
        return fault


def host_ip_for(index: int) -> str:
    """Loopback-range identifiers 127.1.0.1, 127.1.0.2, ... (254 per /24)."""
    block, host = divmod(index, 254)
    return f"127.{1 + block // 256}.{block % 256}.{host + 1}"


class _TrackingServer(web.Server):
    """aiohttp's low-level server, telling the simulator about every connection it holds."""

    def __init__(self, handler: Any, sim: Simulator, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sim = sim

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._sim._connected(transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        if handler.transport is not None:
            self._sim._disconnected(handler.transport)
        super().connection_lost(handler, exc)


def _json_response(reply: Reply) -> web.Response:
    if reply.raw is not None:
        return web.Response(status=reply.status, body=reply.raw, headers=reply.headers)
    body = json.dumps(reply.body).encode()
    return web.Response(status=reply.status, body=body, content_type="application/json")


def _reset(transport: asyncio.BaseTransport | None) -> None:
    """Close with RST rather than FIN, like a crashed service."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert isinstance(transport, asyncio.Transport)
    transport.abort()


class Simulator:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.registry = Registry(options.delays, options.behaviour, wall=time.time)
        self.api = Api(self.registry, options.users, options.behaviour)
        self.endpoints: dict[str, Endpoint] = {}
        self._by_port: dict[int, Endpoint] = {}
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.total_requests = 0
        #: every write (PUT, PATCH, DELETE) as it arrived: wall time, host IP, method, path, User-Agent
        self.writes: collections.deque[dict[str, Any]] = collections.deque(maxlen=100_000)
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._server = _TrackingServer(
            self._serve_machine, self, handler_cancellation=True, access_log=None, keepalive_timeout=75
        )
        from cloudify_manager_sim.control import Control  # control imports this module's types

        self._control_app = Control(self)
        self._control_server = web.Server(self._control_app.handle, access_log=None)
        self._control_listener: asyncio.Server | None = None
        self.control_port = 0
        self._ssl: ssl.SSLContext | None = None
        if options.tls_cert:
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(options.tls_cert, options.tls_key or None)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._control_listener = await self._loop.create_server(
            self._control_server, self.options.host, self.options.port, reuse_address=True
        )
        self.control_port = self._control_listener.sockets[0].getsockname()[1]
        await self.add_machines(self.options.machines)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for endpoint in self.endpoints.values():
            await self._close_listener(endpoint)
        if self._control_listener is not None:
            self._control_listener.close()
        await self._server.shutdown(0.5)
        await self._control_server.shutdown(0.5)

    def base_url(self, port: int, scheme: str = "http") -> str:
        host = self.options.advertise_host or self.options.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{port}"

    @property
    def control_url(self) -> str:
        return self.base_url(self.control_port) + "/control"

    def endpoint_url(self, endpoint: Endpoint) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return self.base_url(endpoint.port, scheme) + self.options.endpoint_prefix

    def announcement(self) -> dict[str, Any]:
        return {
            "control": self.control_url,
            "machines": [
                {"host_ip": ep.machine.host_ip, "endpoint": self.endpoint_url(ep)} for ep in self.endpoints.values()
            ],
        }

    # -- machines -------------------------------------------------------------------------------

    async def add_machines(self, count: int) -> list[Endpoint]:
        added = []
        for _ in range(count):
            index = len(self.endpoints)
            machine = self.registry.add_machine(host_ip_for(index))
            endpoint = Endpoint(machine, port=self.options.base_port + index if self.options.base_port else 0)
            self.endpoints[machine.host_ip] = endpoint
            await self._listen(endpoint)
            added.append(endpoint)
        return added

    async def _listen(self, endpoint: Endpoint) -> None:
        server = await self._loop.create_server(
            self._server, self.options.host, endpoint.port, reuse_address=True, backlog=128, ssl=self._ssl
        )
        endpoint.server = server
        endpoint.port = server.sockets[0].getsockname()[1]
        self._by_port[endpoint.port] = endpoint

    async def _close_listener(self, endpoint: Endpoint) -> None:
        if endpoint.server is not None:
            endpoint.server.close()
            endpoint.server = None
        for transport in list(endpoint.transports):
            _reset(transport)
        endpoint.transports.clear()

    async def set_online(self, endpoint: Endpoint, online: bool) -> None:
        if online and endpoint.server is None:
            await self._listen(endpoint)
        elif not online:
            await self._close_listener(endpoint)
        self.registry.set_online(endpoint.machine, online, self._loop.time())
        self.arm()

    def _connected(self, transport: asyncio.Transport) -> None:
        endpoint = self._by_port.get(transport.get_extra_info("sockname")[1])
        if endpoint is None:
            return
        if endpoint.server is None:  # accepted just before the listener closed
            _reset(transport)
            return
        endpoint.transports.add(transport)

    def _disconnected(self, transport: asyncio.BaseTransport) -> None:
        sockname = transport.get_extra_info("sockname")
        endpoint = self._by_port.get(sockname[1]) if sockname else None
        if endpoint is not None:
            endpoint.transports.discard(transport)

    # -- timers ---------------------------------------------------------------------------------

    def arm(self) -> None:
        """Make sure the loop wakes for the registry's next timed transition."""
        due = self.registry.next_due()
        if due is None or (self._timer_due is not None and self._timer_due <= due):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = self._loop.call_at(due, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_due = None
        self.registry.advance(self._loop.time())
        self.arm()

    # -- requests -------------------------------------------------------------------------------

    async def _serve_machine(self, request: web.BaseRequest) -> web.StreamResponse:
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        endpoint = self._by_port.get(sockname[1]) if sockname else None
        if endpoint is None:
            raise asyncio.CancelledError
        prefix = self.options.endpoint_prefix
        path = request.path
        self.total_requests += 1
        self.requests[(endpoint.machine.host_ip, request.method, path)] += 1  # as sent, prefix included
        if request.method in ("PUT", "PATCH", "DELETE"):
            self.writes.append(
                {
                    "time": time.time(),
                    "host_ip": endpoint.machine.host_ip,
                    "method": request.method,
                    "path": path,
                    "agent": request.headers.get("User-Agent", ""),
                }
            )
        if prefix:
            path = path[len(prefix) :] if path == prefix or path.startswith(prefix + "/") else "\0" + path
        if endpoint.latency > 0:
            await asyncio.sleep(endpoint.latency)
        fault = endpoint.take_fault()
        if fault is not None and fault.kind != "reset-after":
            return await self._fault(request, fault)
        try:
            body = await request.read() if request.body_exists else b""
            reply = self.api.handle(
                endpoint.machine,
                ApiRequest(
                    method=request.method,
                    path=path,
                    query=request.query,
                    authorization=request.headers.get("Authorization"),
                    content_type=request.headers.get("Content-Type"),
                    body=body,
                ),
                self._loop.time(),
            )
        except ApiError as e:
            reply = e.reply()
        except Exception as e:  # an unhandled error is a 500, as in the manager
            reply = internal_error(e)
        self.arm()
        if fault is not None:  # reset-after: the request took effect, the answer is lost
            return await self._fault(request, fault)
        return _json_response(reply)

    async def _fault(self, request: web.BaseRequest, fault: Fault) -> web.StreamResponse:
        if fault.kind == "500":
            return _json_response(internal_error(RuntimeError("injected fault")))
        if fault.kind == "badjson":
            return web.Response(status=200, body=b'{"initialized": tru', content_type="application/json")
        if fault.kind == "hang":
            await asyncio.sleep(fault.hang_seconds)
        _reset(request.transport)
        await asyncio.sleep(3600)  # connection_lost cancels this handler
        raise asyncio.CancelledError
