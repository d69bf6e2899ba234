"""Kubernetes client plumbing: which credentials to use, and errors that are safe to show.

Everything a user sees about an API failure goes through `describe_error`, which keeps the
status line and the API server's own message but never headers, request bodies, tokens or
kubeconfig contents.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import urllib3
from kubernetes import client, config

from gpu_inventory.api import errors

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"\)\]]+)")
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-f]+>")
_MAX = 300


def api_client_factory(
    kubeconfig: str | None = None, context: str | None = None
) -> Callable[[], client.ApiClient]:
    """A factory of API clients: the given kubeconfig, else $KUBECONFIG, else the in-cluster
    ServiceAccount when running in a pod, else ~/.kube/config."""

    def make() -> client.ApiClient:
        configuration = client.Configuration()
        in_pod = "KUBERNETES_SERVICE_HOST" in os.environ
        if kubeconfig is None and not os.environ.get("KUBECONFIG") and in_pod:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        return client.ApiClient(configuration)

    return make


def server_address(api_client: client.ApiClient) -> str:
    return str(api_client.configuration.host or "")


def describe_error(error: BaseException) -> str:
    """A one-line, credential-free description of a Kubernetes client failure."""
    if isinstance(error, client.ApiException):
        if error.status in (None, 0):
            return _clean(f"request failed: {error.reason}")
        detail = errors.status_message(error.body)
        line = f"HTTP {error.status} {error.reason or ''}".strip()
        if error.status == 401:
            line += " (the MCP server's credentials were rejected)"
        return _clean(f"{line}: {detail}" if detail else line)
    if isinstance(error, config.ConfigException):
        return _clean(f"cannot load Kubernetes credentials: {error}")
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    text = str(error)
    if isinstance(error, urllib3.exceptions.SSLError):
        return _clean(f"TLS error: {text}")
    found = _ERRNO.search(text)
    if found:  # before timeouts: urllib3's NewConnectionError is a ConnectTimeoutError
        return _clean(found.group(1).strip().lower())
    if isinstance(error, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(error, urllib3.exceptions.ProtocolError):
        return "connection lost"
    return _clean(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def _clean(text: str) -> str:
    text = _OBJECT_REPR.sub("", text)
    text = " ".join(text.split())
    return text if len(text) <= _MAX else text[: _MAX - 3] + "..."
