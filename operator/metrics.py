"""Prometheus metrics of the operator, served on their own port (`OperatorConfig.metrics_port`).

A private registry (not prometheus-client's global one), so tests can build several.
"""

from __future__ import annotations

import threading
import wsgiref.simple_server
from collections.abc import Callable, Mapping
from typing import Any, Final

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS: Final = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Objects held, status writes, and how long a pod change takes to reach the status."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.objects = Gauge(
            "gpu_inventory_operator_objects",
            "Objects held in the operator's projections, by kind "
            "(pods: only pods that hold GPU-like extended resources; skipped_pods: unreadable).",
            ["kind"],
            registry=self.registry,
        )
        self.writes = Counter(
            "gpu_inventory_operator_status_writes",
            "Writes to the API server, by object kind and result.",
            ["kind", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gpu_inventory_operator_pod_event_to_status_seconds",
            "Seconds from the oldest pod event not yet reflected to the end of the writer pass "
            "that reflects it in the GPUInventory status.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.leader = Gauge(
            "gpu_inventory_operator_leader",
            "1 while this replica holds the Lease (or runs standalone) and writes, else 0.",
            registry=self.registry,
        )

    def set_objects(self, counts: Mapping[str, int]) -> None:
        for kind, count in counts.items():
            self.objects.labels(kind=kind).set(count)

    def count_write(self, kind: str, result: str) -> None:
        self.writes.labels(kind=kind, result=result).inc()

    def observe_latency(self, seconds: float) -> None:
        self.latency.observe(max(0.0, seconds))

    def serve(self, port: int, host: str = "0.0.0.0", *, ready: Callable[[], bool]) -> None:
        """Serve `/metrics`, and `/readyz` (200 once `ready()`, else 503), from a daemon
        thread. Readiness is the first complete listing: a rollout waits for a new replica to
        be warm before it stops an old one (kopf's own /healthz answers 200 from the start)."""
        metrics_app = prometheus_client.make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if environ.get("PATH_INFO") == "/readyz":
                code = "200 OK" if ready() else "503 Service Unavailable"
                start_response(code, [("Content-Type", "text/plain")])
                return [code.encode()]
            return metrics_app(environ, start_response)

        server = wsgiref.simple_server.make_server(host, port, app, handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    """No access log line per scrape and probe."""

    def log_message(self, format: str, *args: Any) -> None:
        return None
