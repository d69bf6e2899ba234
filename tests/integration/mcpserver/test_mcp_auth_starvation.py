"""Auth cannot starve tools: with TokenReview hanging, an accepted caller keeps getting answers.

A local HTTPS proxy (`ReviewProxy`) stands in front of the real API server for the MCP server's
token checks: it relays TokenReview and SubjectAccessReview to the API server unchanged until
told to hang, then holds every TokenReview open, as a slow or overloaded API server (or a stuck
webhook authenticator behind it) would.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gpu_inventory.mcpserver.app import MCP_PATH, build_http_app, kubernetes_verifier
from gpu_inventory.mcpserver.settings import Settings
from gpu_inventory.testing import samples
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.mcpcalls import answer, answer_when
from gpu_inventory.testing.wait import eventually

from .conftest import ReviewProxy, serving

pytestmark = pytest.mark.cluster

WAITING_CALLERS = 45
AUTH_TIMEOUT = 3.0


async def test_an_accepted_caller_is_answered_while_token_reviews_hang(
    cluster: ControlPlane, objects: Any, proxy: ReviewProxy, reader_token: str, tmp_path: Path
) -> None:
    node = samples.gpunode("t4-a", gpus=4, allocated=1, heartbeat=datetime.now(UTC))
    objects.put(samples.inventory([node], now=datetime.now(UTC)), node)
    reviews_via_proxy = Settings(
        transport="http",
        kubeconfig=str(proxy.kubeconfig(cluster.kubeconfig, tmp_path / "proxy.kubeconfig")),
        auth_timeout_seconds=AUTH_TIMEOUT,
    )
    verifier = kubernetes_verifier(reviews_via_proxy)
    app = build_http_app(
        Settings(transport="http", kubeconfig=str(cluster.kubeconfig)), token_verifier=verifier
    )
    with serving(app) as base:
        url = base + MCP_PATH
        headers = {"Authorization": f"Bearer {reader_token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as reader_http,
            Client(streamable_http_client(url, http_client=reader_http)) as reader,
            httpx2.AsyncClient(timeout=60, limits=httpx2.Limits(max_connections=200)) as others,
        ):
            # The reader's token is judged while the API server answers, then cached.
            await answer_when(reader, "get_gpu_inventory", {"node": "t4-a"}, lambda d: True)
            assert verifier.reviews == 1

            proxy.hang.set()
            statuses: list[int] = []
            tokenless: list[int] = []

            async def unreviewed(index: int) -> None:
                response = await others.post(
                    url,
                    json={"jsonrpc": "2.0", "id": index, "method": "tools/list"},
                    headers={
                        "Authorization": f"Bearer not-yet-reviewed-{index}",
                        "Accept": "application/json, text/event-stream",
                    },
                )
                statuses.append(response.status_code)

            async def without_token(index: int) -> None:
                response = await others.post(
                    url,
                    json={"jsonrpc": "2.0", "id": index, "method": "tools/list"},
                    headers={"Accept": "application/json, text/event-stream"},
                )
                tokenless.append(response.status_code)

            began = time.monotonic()
            async with anyio.create_task_group() as crowd:
                for index in range(WAITING_CALLERS):
                    crowd.start_soon(unreviewed, index)
                    crowd.start_soon(without_token, index)

                def reviews_are_stuck() -> None:
                    assert proxy.hanging >= 1

                await anyio.to_thread.run_sync(
                    lambda: eventually(reviews_are_stuck, timeout=10, what="hanging reviews")
                )
                # While the crowd waits, every call of the accepted caller is answered, fast.
                reader_began = time.monotonic()
                for _ in range(10):
                    with anyio.fail_after(2):
                        data = await answer(reader, "get_gpu_inventory", {"node": "t4-a"})
                    assert data["nodes"][0]["node_name"] == "t4-a"
                reader_took = time.monotonic() - reader_began
                still_waiting = WAITING_CALLERS - len(statuses)
            crowd_took = time.monotonic() - began

    # Timed from the reader's own first call (the crowd's start-up is not the reader's wait),
    # and while part of the crowd was still waiting for its reviews: the two overlapped.
    assert reader_took < AUTH_TIMEOUT, "the reader waited for the crowd's token reviews"
    assert still_waiting > 0, "the reader was answered only once the crowd's reviews had ended"
    # No verdict could be had: 503 (retry later), never 401 (which would discard a good token).
    assert statuses == [503] * WAITING_CALLERS
    assert tokenless == [401] * WAITING_CALLERS
    assert crowd_took < AUTH_TIMEOUT + 5
    # Bounded: a few reviews reach the API server at once; the rest wait their turn or are
    # turned away, and a review its caller gave up on keeps its slot until its socket times out.
    assert proxy.hanging >= 1
    assert verifier.peak_threads == Settings().auth_concurrency
