"""A fault-injecting HTTPS proxy in front of the real kube-apiserver, for tests of slow pages,
5xx answers and hanging requests.

Everything behind it is the real API server: the proxy only forwards each request (streaming
watch responses as they come) and, for the requests a rule matches, first waits, or answers
itself with an error, or never answers. Clients reach it with a kubeconfig whose server is the
proxy (TLS from the control plane's own CA) and whose user is a bearer token, which the proxy
forwards as it is, so RBAC and authentication are the API server's own.

    with FaultProxy(plane) as proxy:
        proxy.rules.append(Rule(lambda r: r.is_list("pods") and r.continues, delay=3))
        kubeconfig = proxy.kubeconfig(token)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from gpu_inventory.testing.controlplane import ControlPlane, free_port

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)


@dataclasses.dataclass(frozen=True)
class Seen:
    """A request as a rule sees it."""

    method: str
    path: str
    query: dict[str, str]

    def is_list(self, plural: str) -> bool:
        """A LIST (not a WATCH) of `plural` (e.g. "pods", "gpunodes")."""
        return (
            self.method == "GET"
            and self.path.rstrip("/").endswith("/" + plural)
            and self.query.get("watch") not in ("true", "1")
        )

    @property
    def continues(self) -> bool:
        """A later page of a paged LIST."""
        return bool(self.query.get("continue"))

    def writes(self, plural: str) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE") and f"/{plural}" in self.path


@dataclasses.dataclass
class Rule:
    """What to do with the requests `match` selects: wait `delay` seconds first; then answer
    `status` with a Status body (0: forward to the API server); `hang` never answers."""

    match: Callable[[Seen], bool]
    delay: float = 0.0
    status: int = 0
    message: str = "injected by the test's fault proxy"
    hang: bool = False
    hits: int = 0


class FaultProxy:
    """Start with `start()` (or `with`); rules can be changed while it runs."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.rules: list[Rule] = []
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        pki = plane.pki
        self._serving = pki.issue("fault-proxy", common_name="localhost", server=True)
        self._ca = pki.ca.cert

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(TimeoutError, concurrent.futures.TimeoutError):
                asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _start(self) -> None:
        upstream = ssl.create_default_context(cafile=str(self._ca))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=upstream, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(str(self._serving.cert), str(self._serving.key))
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=serving).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # --- clients ---------------------------------------------------------------------------------

    def kubeconfig(self, token: str, path: Path | None = None) -> Path:
        """A kubeconfig that reaches the API server through this proxy with `token`."""
        path = path or self.plane.workdir / "kubeconfigs" / f"proxy-{self.port}.kubeconfig"
        path.parent.mkdir(exist_ok=True)
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "proxy",
                    "cluster": {"server": self.url, "certificate-authority": str(self._ca)},
                }
            ],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "user"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(document))
        path.chmod(0o600)
        return path

    # --- forwarding ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.path, dict(request.query))
        rule = next((r for r in self.rules if r.match(seen)), None)
        if rule is not None:
            rule.hits += 1
            if rule.hang:
                await asyncio.Event().wait()  # until the client gives up
            if rule.delay:
                await asyncio.sleep(rule.delay)
            if rule.status:
                return _status(rule.status, rule.message)
        return await self._forward(request)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method,
            self.plane.server + request.rel_url.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
            # Clients may send a body without a Content-Type (the API server reads it as
            # JSON); aiohttp would add application/octet-stream, which it refuses (415).
            skip_auto_headers=("Content-Type",),
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    response.headers[key] = value
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (aiohttp.ClientError, ConnectionResetError):
                pass  # the API server or the client went away mid-stream
            return response


def _status(code: int, message: str) -> web.Response:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "code": code,
    }
    return web.Response(status=code, text=json.dumps(body), content_type="application/json")
