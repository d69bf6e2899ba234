"""HTTP auth on a real loopback port, every verdict given by the real API server.

Callers bring `kubectl create token SA --audience gpu-inventory-mcp`; the server refuses tokens
meant for anything else (the MCP authorization spec's audience rule), checks Host and Origin
before any TokenReview, and answers 503 (not 401) when the API server cannot judge a token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from kubernetes import client
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gpu_inventory.mcpserver.app import MCP_PATH, build_http_app, kubernetes_verifier
from gpu_inventory.mcpserver.auth import KubernetesTokenVerifier
from gpu_inventory.mcpserver.settings import Settings
from gpu_inventory.testing import samples
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.mcpcalls import answer_when
from gpu_inventory.testing.wait import eventually

from .conftest import (
    ReviewProxy,
    grant_inventory_reader,
    kubectl_create_token,
    service_account,
    serving,
)

pytestmark = pytest.mark.cluster

LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def http_settings(kubeconfig: Path | str, **options: Any) -> Settings:
    return Settings(transport="http", kubeconfig=str(kubeconfig), **options)


@pytest.fixture
def verifier(control_plane: ControlPlane) -> KubernetesTokenVerifier:
    return kubernetes_verifier(http_settings(control_plane.kubeconfig))


@pytest.fixture
def url(cluster: ControlPlane, objects: Any, verifier: KubernetesTokenVerifier) -> Iterator[str]:
    """The MCP server over HTTP; it reads the cluster with the admin kubeconfig."""
    node = samples.gpunode("t4-a", gpus=4, allocated=1, heartbeat=datetime.now(UTC))
    objects.put(samples.inventory([node], now=datetime.now(UTC)), node)
    app = build_http_app(http_settings(cluster.kubeconfig), token_verifier=verifier)
    with serving(app) as base:
        yield base


def post(url: str, token: str | None = None, **headers: str) -> httpx2.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.post(url + MCP_PATH, json=LIST_TOOLS, headers={**MCP_HEADERS, **headers})


def test_health_is_open_and_ready_after_the_first_list(url: str) -> None:
    assert httpx2.get(url + "/healthz").status_code == 200

    def ready() -> None:
        response = httpx2.get(url + "/readyz")
        assert response.status_code == 200, response.text

    eventually(ready, timeout=15)


def test_readyz_is_503_until_the_cache_has_listed(unreachable_kubeconfig: Path) -> None:
    with serving(build_http_app(http_settings(unreachable_kubeconfig, auth="none"))) as base:
        assert httpx2.get(base + "/healthz").status_code == 200
        response = httpx2.get(base + "/readyz")
        assert response.status_code == 503
        assert response.json()["synced"] is False


def test_no_token_is_401_with_a_bearer_challenge(url: str) -> None:
    response = post(url)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")


def test_no_oauth_discovery_is_offered(url: str) -> None:
    """Kubernetes tokens come from `kubectl create token`, not an OAuth server: no RFC 9728
    metadata and no `resource_metadata` pointer that would send a client into a dead end."""
    assert httpx2.get(url + "/.well-known/oauth-protected-resource").status_code == 404
    assert httpx2.get(url + "/.well-known/oauth-protected-resource/mcp").status_code == 404
    assert "resource_metadata" not in post(url).headers["www-authenticate"]


def test_a_401_says_how_to_make_a_token(url: str) -> None:
    """A newcomer learns from the refusal itself what kind of token to bring."""
    response = post(url)

    assert response.status_code == 401
    description = response.json()["error_description"]
    for text in (description, response.headers["www-authenticate"]):
        assert "kubectl create token" in text
        assert "--audience gpu-inventory-mcp" in text
        assert "gpuinventories" in text


def test_why_the_api_server_rejected_a_token_is_logged(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="gpu_inventory.mcpserver.auth"):
        assert post(url, "not-a-kubernetes-token").status_code == 401

    assert "invalid bearer token" in caplog.text  # TokenReview's status.error


@pytest.mark.parametrize(
    "token",
    [" x", "x y", '"quoted"', "a,b", "=x"],
    ids=["leading-space", "inner-space", "quotes", "comma", "padding-first"],
)
def test_a_malformed_token_is_401_without_any_review(
    url: str, verifier: KubernetesTokenVerifier, token: str
) -> None:
    """RFC 6750 §2.1: a bearer token is a b64token. `Bearer  x` (two spaces) would reach the
    API server as " x", which TokenReview authenticates as system:anonymous
    (kubernetes/kubernetes#114165)."""
    assert post(url, token).status_code == 401
    assert verifier.reviews == 0


@dataclass(frozen=True)
class Proxied:
    """The MCP server over HTTP, reading the cluster directly and judging tokens through
    `proxy`."""

    proxy: ReviewProxy
    url: str
    verifier: KubernetesTokenVerifier


@pytest.fixture
def proxied(
    cluster: ControlPlane, objects: Any, proxy: ReviewProxy, tmp_path: Path
) -> Iterator[Proxied]:
    objects.put(samples.inventory([], now=datetime.now(UTC)))
    proxied_kubeconfig = proxy.kubeconfig(cluster.kubeconfig, tmp_path / "proxy.kubeconfig")
    verifier = kubernetes_verifier(http_settings(proxied_kubeconfig))
    app = build_http_app(http_settings(cluster.kubeconfig), token_verifier=verifier)
    with serving(app) as base:
        yield Proxied(proxy, base, verifier)


def test_an_anonymous_identity_is_401_even_where_rbac_lets_anonymous_read(
    proxied: Proxied,
    k8s: client.ApiClient,
    namespace: str,
    cluster_rbac: list[tuple[str, str]],
) -> None:
    """Some authenticators (and TokenReview itself for odd tokens, kubernetes/kubernetes#114165
    and #106142) answer authenticated=true for system:anonymous. A binding for
    system:unauthenticated must not open the MCP server to callers without a credential."""
    grant_inventory_reader(
        k8s,
        namespace,
        "anonymous",
        cluster_rbac,
        subject={
            "kind": "Group",
            "name": "system:unauthenticated",
            "apiGroup": "rbac.authorization.k8s.io",
        },
    )
    proxied.proxy.rewrite = lambda review: {
        **review,
        "status": {
            "authenticated": True,
            "user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
            "audiences": review["spec"]["audiences"],
        },
    }

    assert post(proxied.url, "a-well-formed-token").status_code == 401
    assert proxied.verifier.reviews == 1


@pytest.mark.parametrize("audiences", [[], ["vault"]], ids=["none", "another"])
def test_a_review_that_does_not_bind_the_token_to_this_server_is_401(
    proxied: Proxied, cluster: ControlPlane, namespace: str, reader: str, audiences: list[str]
) -> None:
    """The answer's status.audiences decides, not the request: an authenticator that is not
    audience-aware answers [] (a token for the API server itself)."""
    proxied.proxy.rewrite = lambda review: {
        **review,
        "status": {**review["status"], "audiences": audiences},
    }
    assert post(proxied.url, kubectl_create_token(cluster, namespace, reader)).status_code == 401

    proxied.proxy.rewrite = None
    # A token of the same caller, its review left alone: accepted.
    assert post(proxied.url, kubectl_create_token(cluster, namespace, reader)).status_code == 200


def test_a_rejected_token_is_401_and_its_refusal_is_cached(
    url: str, verifier: KubernetesTokenVerifier
) -> None:
    assert post(url, "not-a-kubernetes-token").status_code == 401
    assert post(url, "not-a-kubernetes-token").status_code == 401
    assert verifier.reviews == 1  # the second refusal came from the short negative cache


def test_a_token_meant_for_the_api_server_is_refused(
    url: str, cluster: ControlPlane, namespace: str, reader: str
) -> None:
    """A plain `kubectl create token` is a credential for the whole cluster: refused."""
    apiserver_token = kubectl_create_token(cluster, namespace, reader, audience=None)

    assert post(url, apiserver_token).status_code == 401


def test_a_token_for_another_audience_is_refused(
    url: str, cluster: ControlPlane, namespace: str, reader: str
) -> None:
    assert (
        post(url, kubectl_create_token(cluster, namespace, reader, audience="vault")).status_code
        == 401
    )


def test_the_development_opt_in_accepts_the_api_servers_audience(
    cluster: ControlPlane, objects: Any, namespace: str, reader: str
) -> None:
    objects.put(samples.inventory([], now=datetime.now(UTC)))
    settings = http_settings(cluster.kubeconfig, allow_apiserver_audience=True)
    apiserver_token = kubectl_create_token(cluster, namespace, reader, audience=None)
    with serving(build_http_app(settings)) as base:
        assert post(base, apiserver_token).status_code == 200
        assert post(base, kubectl_create_token(cluster, namespace, reader)).status_code == 200


def test_a_serviceaccount_without_rbac_is_403(
    url: str, cluster: ControlPlane, k8s: client.ApiClient, namespace: str
) -> None:
    service_account(k8s, namespace, "nobody")

    response = post(url, kubectl_create_token(cluster, namespace, "nobody"))
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["www-authenticate"]


async def test_a_reader_calls_tools_with_the_sdk_client(
    url: str, reader_token: str, verifier: KubernetesTokenVerifier
) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {reader_token}"}, timeout=30)
    async with http, Client(streamable_http_client(url + MCP_PATH, http_client=http)) as mcp:
        data = await answer_when(mcp, "get_gpu_inventory", {"node": "t4-a"}, lambda d: True)
        assert data["nodes"][0]["node_name"] == "t4-a"
        await mcp.call_tool("find_gpu_capacity", {"count": 1})
    assert verifier.reviews == 1  # later requests hit the short cache


def test_host_and_origin_are_checked_before_any_token_review(
    url: str, verifier: KubernetesTokenVerifier
) -> None:
    assert post(url, "some-token", Host="attacker.example").status_code == 421
    assert post(url, "some-token", Origin="http://attacker.example").status_code == 403
    assert verifier.reviews == 0


def test_health_probes_never_review_a_token_and_never_fail_on_auth(
    cluster: ControlPlane, objects: Any, unreachable_kubeconfig: Path
) -> None:
    """The kubelet probes by pod IP with no token; a forged token, a foreign Host or an API
    server that cannot judge tokens changes nothing about /healthz and /readyz."""
    objects.put(samples.inventory([], now=datetime.now(UTC)))
    verifier = kubernetes_verifier(http_settings(unreachable_kubeconfig))
    app = build_http_app(http_settings(cluster.kubeconfig), token_verifier=verifier)
    hostile = {"Host": "attacker.example", "Origin": "http://attacker.example"}
    with serving(app) as base:

        def ready() -> None:
            assert httpx2.get(base + "/readyz").status_code == 200

        eventually(ready, timeout=15)
        for index in range(3):
            for path in ("/healthz", "/readyz"):
                forged = {"Authorization": f"Bearer forged-{index}"}
                response = httpx2.get(base + path, headers={**hostile, **forged})
                assert response.status_code == 200, (path, response.text)

    assert verifier.reviews == 0


def test_hosts_without_a_port_are_allowed_like_with_one(
    cluster: ControlPlane, objects: Any, reader_token: str
) -> None:
    """A Service on port 80, an Ingress or `curl http://localhost/` send Host without a port."""
    objects.put(samples.inventory([], now=datetime.now(UTC)))
    service = "gpu-inventory-mcp.gpu-inventory.svc"
    settings = http_settings(cluster.kubeconfig, allowed_hosts=(f"{service}:*",))
    with serving(build_http_app(settings)) as base:
        for host in ("localhost", "127.0.0.1", service, f"{service}:8080"):
            assert post(base, reader_token, Host=host).status_code == 200, host
        assert post(base, reader_token, Origin=f"https://{service}").status_code == 200
        assert post(base, reader_token, Host="gpu-inventory-mcp.evil").status_code == 421


def test_localhost_on_any_port_is_allowed_for_kubectl_port_forward(
    url: str, reader_token: str
) -> None:
    for host in ("localhost:18080", "127.0.0.1:9", "[::1]:8080"):
        assert post(url, reader_token, Host=host).status_code == 200, host
    assert post(url, reader_token, Origin="http://localhost:18080").status_code == 200


def test_an_api_server_that_cannot_be_reached_is_503_not_401(
    cluster: ControlPlane, objects: Any, unreachable_kubeconfig: Path, reader_token: str
) -> None:
    """The cache reads the real cluster; token reviews go to an address where nothing listens."""
    objects.put(samples.inventory([], now=datetime.now(UTC)))
    verifier = kubernetes_verifier(http_settings(unreachable_kubeconfig))
    app = build_http_app(http_settings(cluster.kubeconfig), token_verifier=verifier)
    with serving(app) as base:
        response = post(base, reader_token)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "temporarily_unavailable"
    # What went wrong stays in the server's log: an unauthenticated caller learns nothing
    # about the API server (its address, its errors).
    description = response.json()["error_description"]
    assert "retry" in description
    assert "127.0.0.1" not in description
    assert "refused" not in description
