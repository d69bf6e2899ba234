"""`/healthz` for the kubelet's probes: 200 while the agent's loop keeps turning, 503 after.

The API server being down does not make the agent unhealthy (restarting would not help); a
loop stuck in a call that never returns does.
"""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Liveness:
    """The loop calls `beat()` each turn; `alive()` is False once beats stop for too long."""

    def __init__(self, stale_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stale_after = stale_after
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def alive(self) -> bool:
        return self._clock() - self._last <= self._stale_after


class HealthServer:
    """A tiny HTTP server in a daemon thread. Port 0 picks a free port (see `port`)."""

    def __init__(self, liveness: Liveness, *, host: str = "0.0.0.0", port: int = 8081) -> None:
        probe = liveness

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/healthz":
                    self._answer(404, b"not found\n")
                elif probe.alive():
                    self._answer(200, b"ok\n")
                else:
                    self._answer(503, b"the agent's loop has stalled\n")

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("healthz: " + format, *args)

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="healthz", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> int:
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
