"""Real clients against the HTTP server on the local control plane: `curl | jq` (the legacy
tool's own check) and the MCP Inspector CLI both get the seed-shaped answer."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gpu_inventory.mcpserver.app import MCP_PATH, build_http_app
from gpu_inventory.mcpserver.server import RESOURCE_URI
from gpu_inventory.mcpserver.settings import Settings
from gpu_inventory.mcpserver.subscriptions import STATELESS_HTTP_REFUSAL
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.legacy_shape import assert_is_the_seed_answer, target_cluster
from gpu_inventory.testing.mcpcalls import inspector, mcp_clients, summary_after_update
from gpu_inventory.testing.wait import eventually

from .conftest import serving

pytestmark = pytest.mark.cluster

NODE = "ip-10-0-0-153"
CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "get_gpu_inventory", "arguments": {"node": NODE}},
}


@pytest.fixture
def url(cluster: ControlPlane, objects: Any) -> Iterator[str]:
    """The seed's example cluster as CRs, and the MCP server over HTTP, ready."""
    inventory, nodes = target_cluster(datetime.now(UTC))
    objects.put(inventory, *nodes)
    settings = Settings(transport="http", kubeconfig=str(cluster.kubeconfig))
    with serving(build_http_app(settings)) as base:

        def ready() -> None:
            assert httpx2.get(base + "/readyz").status_code == 200

        eventually(ready, timeout=15)
        yield base + MCP_PATH


def curl(
    url: str, token: str, body: dict[str, Any], jq_filter: str
) -> subprocess.CompletedProcess[str]:
    """`curl ... | jq FILTER`, as a person types it (a real shell pipeline)."""
    clients = mcp_clients()
    pipeline = (
        f"{clients.curl} -sS --fail-with-body -X POST {shlex.quote(url)}"
        f" -H {shlex.quote('Authorization: Bearer ' + token)}"
        " -H 'Content-Type: application/json'"
        " -H 'Accept: application/json, text/event-stream'"
        f" -d {shlex.quote(json.dumps(body))}"
        f" | {clients.jq} -c {shlex.quote(jq_filter)}"
    )
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_curl_piped_to_jq_reads_the_seed_answer(url: str, reader_token: str) -> None:
    done = curl(url, reader_token, CALL, ".result.content[0].text|fromjson")

    assert done.returncode == 0, done.stderr
    assert_is_the_seed_answer(json.loads(done.stdout))


def test_every_reply_is_one_json_body(url: str, reader_token: str) -> None:
    response = httpx2.post(
        url,
        json=CALL,
        headers={
            "Authorization": f"Bearer {reader_token}",
            "Accept": "application/json, text/event-stream",
        },
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert_is_the_seed_answer(response.json()["result"]["structuredContent"])


def over_http(url: str, token: str) -> tuple[str, ...]:
    """The Inspector CLI's arguments for this server: the URL is its target."""
    return (url, "--transport", "http", "--header", f"Authorization: Bearer {token}")


def test_the_inspector_cli_calls_the_tool_over_http(url: str, reader_token: str) -> None:
    http = over_http(url, reader_token)

    call = ("--method", "tools/call", "--tool-name", "get_gpu_inventory")
    result = inspector(*http, *call, "--tool-arg", f"node={NODE}")
    assert result["isError"] is False
    assert_is_the_seed_answer(result["structuredContent"])
    assert_is_the_seed_answer(json.loads(result["content"][0]["text"]))

    tools = inspector(*http, "--method", "tools/list")["tools"]
    assert {t["name"] for t in tools} == {
        "get_gpu_inventory",
        "get_gpu_health",
        "find_gpu_capacity",
    }
    read = inspector(*http, "--method", "resources/read", "--uri", RESOURCE_URI)
    assert json.loads(read["contents"][0]["text"])["cluster_summary"]["total_gpus"] == 4


def test_the_inspector_cli_reads_a_bad_argument_as_a_tool_error(
    url: str, reader_token: str
) -> None:
    call = ("--method", "tools/call", "--tool-name", "get_gpu_inventory")
    result = inspector(*over_http(url, reader_token), *call, "--tool-arg", "node=gpu-99")

    assert result["isError"] is True
    assert "node 'gpu-99' is not a GPU node in the inventory" in result["content"][0]["text"]


async def test_a_current_client_hears_of_inventory_changes_over_http(
    url: str, reader_token: str, objects: Any
) -> None:
    """A 2026-07-28 client (the SDK v2 Client) over the stateless HTTP endpoint: its
    subscriptions/listen stream carries the update when the GPUInventory changes."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {reader_token}"}, timeout=30)
    async with (
        http,
        Client(streamable_http_client(url, http_client=http)) as client,
        client.listen(resource_subscriptions=[RESOURCE_URI]) as subscription,
    ):
        inventory, _ = target_cluster(datetime.now(UTC))
        assert inventory.status is not None
        busier = inventory.status.summary.model_copy(update={"allocated": 3, "available": 1})
        objects.put_inventory(
            inventory.model_copy(
                update={"status": inventory.status.model_copy(update={"summary": busier})}
            )
        )
        summary = await summary_after_update(client, subscription)
    assert summary["gpus_allocated"] == 3


def test_older_http_clients_are_told_subscriptions_are_not_served_here(
    url: str, reader_token: str
) -> None:
    """A 2025-06-18 client over stateless HTTP: initialize says subscribe false, and
    resources/subscribe explains why and what to do instead."""
    headers = {
        "Authorization": f"Bearer {reader_token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "curl", "version": "8"},
        },
    }
    init = httpx2.post(url, json=initialize, headers=headers).json()["result"]
    assert init["capabilities"]["resources"]["subscribe"] is False
    assert init["serverInfo"]["version"]

    subscribe = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "resources/subscribe",
        "params": {"uri": RESOURCE_URI},
    }
    error = httpx2.post(url, json=subscribe, headers=headers).json()["error"]
    assert error["message"] == STATELESS_HTTP_REFUSAL
