"""The few API calls the writer and the Lease make, on the sync `kubernetes` client.

kopf has no public client for objects other than the one a handler serves, so writes go
through the official client, called from the event loop with `asyncio.to_thread`. Every
failure becomes one of two exceptions the callers act on: `ApiError` (the server answered
with a status: 403, 404, 409, 422...) or `UnavailableError` (no answer, a 5xx or a 429: retry
with backoff).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import urllib3
from kubernetes import client, config

from gpu_inventory.api import constants, errors
from gpu_inventory.api.constants import Reason
from gpu_inventory.operator.config import POD_FIELD_SELECTOR
from gpu_inventory.operator.store import DRA_KINDS, Kind

_G, _V = constants.GROUP, constants.VERSION


class ApiError(Exception):
    """The API server refused a request; `status` is the HTTP code, `message` its reason."""

    def __init__(self, status: int, message: str, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.what = what

    @property
    def too_large(self) -> bool:
        """etcd refused the object's size: kube-apiserver answers 500 "etcdserver: request is
        too large" (measured on v1.34), or 413 when its own request-body limit is hit."""
        return self.status == 413 or "request is too large" in self.message

    @property
    def refusal(self) -> str:
        """Which kind of refusal this is, as the Stalled condition's reason."""
        if self.status == 403:
            return Reason.FORBIDDEN
        if self.too_large:
            return Reason.TOO_LARGE
        return Reason.WRITE_REFUSED


class UnavailableError(Exception):
    """The API server did not answer usefully (down, 5xx, 429): try again later."""


class FencedError(Exception):
    """This replica may not write now: it does not hold the Lease, or too little of it is left
    for a request to finish before another replica may take over."""


MIN_WRITE_SECONDS: Final = 0.5
"""A write is only started with at least this much time left to finish it."""


class Fence(Protocol):
    def write_deadline(self) -> float | None:
        """Monotonic time by which a write must be over; None: not allowed to write."""


class Unfenced:
    """The standalone operator: the only writer, never fenced."""

    def write_deadline(self) -> float | None:
        return math.inf


def new_api_client(*, pool_size: int = 10) -> client.ApiClient:
    """An ApiClient for `$KUBECONFIG` / `~/.kube/config`, else the in-cluster account."""
    configuration = client.Configuration()
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if Path(kubeconfig.split(os.pathsep)[0]).exists():
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = 0  # the writer retries with its own backoff
    return client.ApiClient(configuration)


class KubeApi:
    """Typed, dict-in dict-out wrappers; each raises ApiError or UnavailableError."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        timeout: float = 30.0,
        fence: Fence | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.timeout = timeout
        self.lease_timeout = min(timeout, 5.0)
        """Lease calls must finish well within the 10 s renew deadline."""
        self.fence: Fence = fence or Unfenced()

    def _call(
        self, what: str, fn: Any, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        try:
            return fn(*args, _request_timeout=timeout or self.timeout, **kwargs)
        except client.ApiException as error:
            status = int(error.status or 0)
            message = _message(error)
            if status >= 500 and "request is too large" in message:
                raise ApiError(status, message, what) from error
            if status >= 500 or status in {0, 429}:
                raise UnavailableError(f"{what}: HTTP {status}: {message}") from error
            raise ApiError(status, message, what) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise UnavailableError(f"{what}: {error}") from error

    def _write(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A write, fenced: checked against the Lease right before it is sent, and given no
        more time than is left before another replica may take over."""
        deadline = self.fence.write_deadline()
        left = None if deadline is None else deadline - time.monotonic()
        if left is None or left < MIN_WRITE_SECONDS:
            raise FencedError(f"{what}: not the Lease holder (or too little of the Lease left)")
        return self._call(what, fn, *args, timeout=min(self.timeout, left), **kwargs)

    # --- discovery ------------------------------------------------------------------------------

    def served(self, group: str, version: str) -> set[str]:
        """The resources the API server serves in `group/version` (empty: not served)."""
        try:
            answer = self._call(
                f"discover {group}/{version}", self.custom.get_api_resources, group, version
            )
        except ApiError as error:
            if error.status == 404:
                return set()
            raise
        return {resource.name for resource in answer.resources or ()}

    # --- the GPUInventory -----------------------------------------------------------------------

    def get_inventory(self) -> dict[str, Any] | None:
        try:
            return dict(
                self._call(
                    "get gpuinventories",
                    self.custom.get_cluster_custom_object,
                    _G,
                    _V,
                    constants.INVENTORY_PLURAL,
                    constants.INVENTORY_NAME,
                )
            )
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def create_inventory(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._create(constants.INVENTORY_PLURAL, body)

    def patch_inventory_status(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch of `/status`; conditional when it carries metadata.resourceVersion."""
        return self._patch_status(constants.INVENTORY_PLURAL, constants.INVENTORY_NAME, patch)

    # --- GPUNodes -------------------------------------------------------------------------------

    def create_gpunode(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._create(constants.NODE_PLURAL, body)

    def patch_gpunode_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch of `/status`; conditional when it carries metadata.resourceVersion."""
        return self._patch_status(constants.NODE_PLURAL, name, patch)

    def _create(self, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(
            self._write(
                f"create {plural}",
                self.custom.create_cluster_custom_object,
                _G,
                _V,
                plural,
                dict(body),
                field_manager=constants.OPERATOR_FIELD_MANAGER,
            )
        )

    def _patch_status(self, plural: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return dict(
            self._write(
                f"patch {plural}/status",
                self.custom.patch_cluster_custom_object_status,
                _G,
                _V,
                plural,
                name,
                dict(patch),
                field_manager=constants.OPERATOR_FIELD_MANAGER,
            )
        )

    # --- listings -------------------------------------------------------------------------------

    def _list(self, kind: Kind, *, limit: int, cont: str | None) -> Any:
        options: dict[str, Any] = {"limit": limit, "_preload_content": False}
        if cont:
            options["_continue"] = cont
        if kind is Kind.PODS:
            response = self._call(
                "list pods",
                self.core.list_pod_for_all_namespaces,
                field_selector=POD_FIELD_SELECTOR,
                **options,
            )
        elif kind is Kind.NODES:
            response = self._call("list nodes", self.core.list_node, **options)
        elif kind in DRA_KINDS:  # built-in, but the generic path lists any group's objects
            response = self._call(
                f"list {kind.value}",
                self.custom.list_cluster_custom_object,
                "resource.k8s.io",
                "v1",
                kind.value,
                **options,
            )
        else:
            plural = constants.NODE_PLURAL if kind is Kind.GPUNODES else constants.INVENTORY_PLURAL
            response = self._call(
                f"list {plural}",
                self.custom.list_cluster_custom_object,
                _G,
                _V,
                plural,
                **options,
            )
        return json.loads(response.data)

    def iter_objects(self, kind: Kind, *, chunk: int = 500) -> Iterator[dict[str, Any]]:
        """Every object of `kind`, page by page (only one page in memory at a time)."""
        cont: str | None = None
        while True:
            page = self._list(kind, limit=chunk, cont=cont)
            yield from page.get("items") or ()
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return

    # --- the Lease ------------------------------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = self._call(
                "get leases",
                self.coordination.read_namespaced_lease,
                name,
                namespace,
                timeout=self.lease_timeout,
                _preload_content=False,
            )
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return dict(json.loads(response.data))

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self._call(
            "create leases",
            self.coordination.create_namespaced_lease,
            namespace,
            dict(body),
            timeout=self.lease_timeout,
            _preload_content=False,
        )
        return dict(json.loads(response.data))

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self._call(
            "update leases",
            self.coordination.replace_namespaced_lease,
            name,
            namespace,
            dict(body),
            timeout=self.lease_timeout,
            _preload_content=False,
        )
        return dict(json.loads(response.data))


def _message(error: client.ApiException) -> str:
    return errors.status_message(error.body) or str(error.reason or "")
