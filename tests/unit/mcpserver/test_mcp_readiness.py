"""/readyz says whether this replica can answer: 503 before its cache has listed both CRs, and
503 again once it has lost the API server for longer than it may serve cached data (its tools
refuse then too), so a Service sends callers to a replica that can answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import yaml

from gpu_inventory.mcpserver import kube
from gpu_inventory.mcpserver.app import build_http_app
from gpu_inventory.mcpserver.cache import INVENTORY, NODES, InventoryCache, WatchTiming
from gpu_inventory.mcpserver.settings import Settings
from gpu_inventory.testing import samples
from gpu_inventory.testing.controlplane import free_port
from gpu_inventory.testing.wait import eventually_async


def nowhere(tmp_path: Path) -> Path:
    """A kubeconfig for a loopback port where nothing listens."""
    path = tmp_path / "nowhere.kubeconfig"
    server = f"http://127.0.0.1:{free_port()}"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


async def readyz(app: Any) -> httpx2.Response:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://localhost") as http:
        return await http.get("/readyz")


async def test_ready_once_listed_and_unready_when_the_cache_is_too_old_to_serve(
    tmp_path: Path,
) -> None:
    cache = InventoryCache(
        kube.api_client_factory(str(nowhere(tmp_path))),
        timing=WatchTiming(backoff_initial_seconds=0.05, backoff_max_seconds=0.05),
    )
    settings = Settings(transport="http", auth="none", max_staleness_seconds=0.2)
    app = build_http_app(settings, cache=cache)
    assert (await readyz(app)).status_code == 503  # nothing listed yet

    node = samples.gpunode("a", gpus=1)
    cache.replace_all(NODES, [node.to_wire()])
    cache.replace_all(INVENTORY, [samples.inventory([node]).to_wire()])
    assert (await readyz(app)).status_code == 200

    cache.start()  # its watches cannot reach the API server
    try:

        async def unready() -> httpx2.Response:
            response = await readyz(app)
            assert response.status_code == 503, response.text
            return response

        body = (await eventually_async(unready, timeout=10, what="/readyz 503")).json()
    finally:
        cache.stop()
    assert body["synced"] is True
    assert "Lost contact with the Kubernetes API server" in body["reason"]
