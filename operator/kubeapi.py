"""The few API calls the writer and the Lease make, on the sync `kubernetes` client.

kopf has no public client for objects other than the one a handler serves, so writes go
through the official client, called from the event loop with `asyncio.to_thread`. Every
failure becomes one of two exceptions the callers act on: `ApiError` (the server answered
with a status: 403, 404, 409, 422...) or `UnavailableError` (no answer, a 5xx or a 429: retry
with backoff).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import urllib3
from kubernetes import client, config

from gpu_inventory.api import constants, errors
from gpu_inventory.operator.config import POD_FIELD_SELECTOR
from gpu_inventory.operator.store import Kind

_METADATA_ONLY: Final = {
    "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
}
_G, _V = constants.GROUP, constants.VERSION


class ApiError(Exception):
    """The API server refused a request; `status` is the HTTP code, `message` its reason."""

    def __init__(self, status: int, message: str, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.what = what


class UnavailableError(Exception):
    """The API server did not answer usefully (down, 5xx, 429): try again later."""


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

    def __init__(self, api_client: client.ApiClient, *, timeout: float = 30.0) -> None:
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.timeout = timeout

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=self.timeout, **kwargs)
        except client.ApiException as error:
            status = int(error.status or 0)
            if status >= 500 or status in {0, 429}:
                raise UnavailableError(f"{what}: HTTP {status}") from error
            raise ApiError(status, _message(error), what) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise UnavailableError(f"{what}: {error}") from error

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
        return self._patch_status(constants.INVENTORY_PLURAL, constants.INVENTORY_NAME, patch)

    # --- GPUNodes -------------------------------------------------------------------------------

    def create_gpunode(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._create(constants.NODE_PLURAL, body)

    def patch_gpunode_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._patch_status(constants.NODE_PLURAL, name, patch)

    def _create(self, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(
            self._call(
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
            self._call(
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

    def _list(self, kind: Kind, *, limit: int, cont: str | None, metadata_only: bool) -> Any:
        headers = _METADATA_ONLY if metadata_only else None
        options: dict[str, Any] = {"limit": limit, "_preload_content": False}
        if cont:
            options["_continue"] = cont
        if headers:
            options["_headers"] = headers
        if kind is Kind.PODS:
            response = self._call(
                "list pods",
                self.core.list_pod_for_all_namespaces,
                field_selector=POD_FIELD_SELECTOR,
                **options,
            )
        elif kind is Kind.NODES:
            response = self._call("list nodes", self.core.list_node, **options)
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

    def has_any(self, kind: Kind) -> bool:
        """Whether at least one object of `kind` exists (pods: bound and not finished)."""
        page = self._list(kind, limit=1, cont=None, metadata_only=True)
        return bool(page.get("items"))

    def iter_objects(
        self, kind: Kind, *, chunk: int = 500, metadata_only: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every object of `kind`, page by page (only one page in memory at a time)."""
        cont: str | None = None
        while True:
            page = self._list(kind, limit=chunk, cont=cont, metadata_only=metadata_only)
            yield from page.get("items") or ()
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return

    def list_keys(self, kind: Kind, *, chunk: int = 500) -> set[str]:
        """The store keys of every object of `kind`: pod uids, node/GPUNode names."""
        keys: set[str] = set()
        for item in self.iter_objects(kind, chunk=chunk, metadata_only=True):
            meta = item.get("metadata") or {}
            keys.add(str(meta.get("uid") if kind is Kind.PODS else meta.get("name")))
        return keys

    # --- the Lease ------------------------------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = self._call(
                "get leases",
                self.coordination.read_namespaced_lease,
                name,
                namespace,
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
            _preload_content=False,
        )
        return dict(json.loads(response.data))


def _message(error: client.ApiException) -> str:
    return errors.status_message(error.body) or str(error.reason or "")
