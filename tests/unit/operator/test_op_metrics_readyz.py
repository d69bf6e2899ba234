"""The operator's HTTP endpoint: /readyz answers 503 until the first listing is complete (a
rollout must not stop the old replica for a cold one), /metrics serves the registry."""

from __future__ import annotations

import urllib.error
import urllib.request

from gpu_inventory.operator.metrics import Metrics
from gpu_inventory.testing.controlplane import free_port
from gpu_inventory.testing.wait import eventually


def get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_readyz_follows_the_first_listing_and_metrics_are_served() -> None:
    ready = [False]
    port = free_port()
    Metrics().serve(port, "127.0.0.1", ready=lambda: ready[0])
    assert eventually(lambda: get(port, "/readyz"), timeout=5) == 503
    ready[0] = True
    assert get(port, "/readyz") == 200
    assert get(port, "/metrics") == 200
