"""A counting HTTP proxy in front of the simulated managers.

Each manager endpoint gets its own port on 127.0.0.1 (the simulator tells managers apart by
port); a request is counted, forwarded to the manager on a kept-alive connection, and its answer
returned. ManagerClusters and the 4.0 CLI given the proxied endpoints are measured as a client
outside the operator would see them: every manager request pays one more loopback hop and a pass
through this process's event loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

# hop-by-hop and framing headers: aiohttp sets its own
_DROP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


class CountingProxy:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()  # "METHOD /path" -> requests
        self._lock = threading.Lock()
        self._upstream: dict[int, str] = {}  # local port -> the manager's origin
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="counting-proxy", daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._call(self._setup())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _setup(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ssl=False), auto_decompress=False)

    def expose(self, endpoint: str) -> str:
        """The proxied URL of a manager endpoint (http://127.0.0.1:PORT/prefix)."""
        return str(self._call(self._expose(endpoint)))

    async def _expose(self, endpoint: str) -> str:
        assert self._runner is not None
        parts = urlsplit(endpoint)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        self._upstream[port] = f"{parts.scheme}://{parts.netloc}"
        await web.SockSite(self._runner, sock, backlog=512).start()
        return f"http://127.0.0.1:{port}{parts.path}"

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        port = int(request.transport.get_extra_info("sockname")[1]) if request.transport else 0
        with self._lock:
            self.counts[f"{request.method} {request.path}"] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        body = await request.read()
        async with self._session.request(
            request.method, self._upstream[port] + request.path_qs, headers=headers, data=body or None,
            allow_redirects=False,
        ) as answer:  # fmt: skip
            data = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _DROP}
            if "Content-Encoding" in answer.headers:
                out["Content-Encoding"] = answer.headers["Content-Encoding"]
            return web.Response(status=answer.status, body=data, headers=out)

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    def close(self) -> None:
        async def _close() -> None:
            if self._session is not None:
                await self._session.close()
            if self._runner is not None:
                await self._runner.cleanup()

        self._call(_close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
