"""API failures are described in one line, without credentials."""

from __future__ import annotations

import json

import pytest
import urllib3
from kubernetes import client, config

from gpu_inventory.mcpserver import kube

TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-token"


def api_exception(status: int, reason: str, message: str) -> client.ApiException:
    error = client.ApiException(status=status, reason=reason)
    error.body = json.dumps({"kind": "Status", "message": message})
    error.headers = {"Authorization": f"Bearer {TOKEN}", "Audit-Id": "1"}
    return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(
            api_exception(403, "Forbidden", 'User "x" cannot list resource "gpunodes"'),
            'HTTP 403 Forbidden: User "x" cannot list resource "gpunodes"',
            id="forbidden keeps the API server's message",
        ),
        pytest.param(
            api_exception(401, "Unauthorized", "Unauthorized"),
            "HTTP 401 Unauthorized (the MCP server's credentials were rejected): Unauthorized",
            id="unauthorized says whose credentials",
        ),
        pytest.param(
            urllib3.exceptions.MaxRetryError(
                None,  # type: ignore[arg-type]
                "/apis",
                urllib3.exceptions.NewConnectionError(
                    None,  # type: ignore[arg-type]
                    "Failed to establish a new connection: [Errno 111] Connection refused",
                ),
            ),
            "connection refused",
            id="connection refused",
        ),
        pytest.param(
            urllib3.exceptions.ReadTimeoutError(None, "/apis", "Read timed out."),  # type: ignore[arg-type]
            "timed out",
            id="read timeout",
        ),
        pytest.param(
            urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead"),
            "connection lost",
            id="connection dropped mid-watch",
        ),
        pytest.param(
            config.ConfigException("Invalid kube-config file. No configuration found."),
            "cannot load Kubernetes credentials: Invalid kube-config file. No configuration found.",
            id="no kubeconfig",
        ),
    ],
)
def test_errors_are_one_safe_line(error: BaseException, expected: str) -> None:
    text = kube.describe_error(error)

    assert text == expected
    assert TOKEN not in text
    assert "\n" not in text


def test_long_messages_are_cut() -> None:
    error = api_exception(500, "Internal Server Error", "x" * 5000)

    assert len(kube.describe_error(error)) == 300
