"""A watch-backed, in-memory cache of the `cluster` GPUInventory and every GPUNode.

Each kind has one daemon thread running the informer loop with the sync `kubernetes` client:
LIST (paged) once, then WATCH from the list's resourceVersion; a watch that ends is reopened
from the last resourceVersion seen (bookmarks keep it fresh); `410 Gone` means the version was
compacted away, so the thread lists again. When the API server goes away the thread records a
sanitised error and retries with capped exponential backoff, re-watching from where it was.

Tool calls never wait on any of this: they read `snapshot()`, an immutable `Snapshot` that the
threads swap in on each change. Objects are parsed into the API models once, on arrival; an
invalid GPUNode is logged, left out and named in the snapshot (answers warn about it); an
invalid GPUInventory leaves the last good one in place. Listeners hear about changes to the
inventory, so the server can publish resource updates.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from gpu_inventory.api import constants
from gpu_inventory.api.models import GPUInventory, GPUNode
from gpu_inventory.api.objects import InvalidObjectError, read_gpunode, read_inventory
from gpu_inventory.mcpserver import kube
from gpu_inventory.mcpserver.snapshot import Snapshot

log = logging.getLogger(__name__)

INVENTORY = constants.INVENTORY_PLURAL
NODES = constants.NODE_PLURAL
_LIST_PAGE = 500
_CONNECT_TIMEOUT = 10.0

ApiClientFactory = Callable[[], client.ApiClient]
_M = TypeVar("_M")
Listener = Callable[[], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _ExpiredError(Exception):
    """The resourceVersion (or continue token) is too old: list again."""


@dataclass
class _Kind:
    """One watched kind and its connection state (guarded by the cache's lock)."""

    plural: str
    field_selector: str | None
    synced: bool = False
    connected: bool = False
    error: str | None = None
    delay: float = 0.0
    response: Any = None


@dataclass(frozen=True)
class WatchTiming:
    """How the watch threads pace themselves."""

    watch_timeout_seconds: int = 60
    """Server-side timeout of one WATCH request; it is reopened from the last version seen.
    Short enough that a silently dead connection is noticed within a minute."""

    backoff_initial_seconds: float = 0.5
    """First retry delay after a failure; doubled per failure."""

    backoff_max_seconds: float = 30.0
    """Retry delay cap while the API server stays away."""


class InventoryCache:
    """Start with `start()`, read with `snapshot()`, stop with `stop()`."""

    def __init__(
        self,
        api_client_factory: ApiClientFactory | None,
        *,
        timing: WatchTiming | None = None,
        utcnow: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._factory = api_client_factory
        self._timing = timing or WatchTiming()
        self._utcnow = utcnow
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._kinds = {
            INVENTORY: _Kind(INVENTORY, f"metadata.name={constants.INVENTORY_NAME}"),
            NODES: _Kind(NODES, None),
        }
        self._inventory: GPUInventory | None = None
        self._nodes: dict[str, GPUNode] = {}
        self._invalid_nodes: dict[str, str] = {}
        self._down_since: datetime | None = None
        self._server = ""
        self._snapshot = Snapshot()
        self._settled = threading.Event()
        self._listeners: dict[object, Listener] = {}

    @classmethod
    def from_models(
        cls, inventory: GPUInventory | None, nodes: Iterable[GPUNode]
    ) -> InventoryCache:
        """A cache that holds these objects and never talks to an API server (tests, benches)."""
        cache = cls(None)
        cache._inventory = inventory
        cache._nodes = {n.metadata.name: n for n in nodes}
        for kind in cache._kinds.values():
            kind.synced = kind.connected = True
        cache._publish()
        return cache

    # --- reading ---------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The current view; never blocks on the API server."""
        return self._snapshot

    def wait_settled(self, timeout: float) -> None:
        """Block (at most `timeout` seconds) until the first LIST finished or failed, so a
        question asked right after start-up (a stdio server starts with its first client) is
        answered rather than told to come back; returns at once ever after."""
        self._settled.wait(timeout)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener()` (from a watch thread) whenever the GPUInventory changes."""
        token = object()
        with self._lock:
            self._listeners[token] = listener

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(token, None)

        return unsubscribe

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start one watch thread per kind; a cache built from models has none to start."""
        if self._factory is None or self._threads:
            return
        # A fresh event per start: a thread that outlived an earlier stop() still sees its own.
        self._stopping = stopping = threading.Event()
        for kind in self._kinds.values():
            thread = threading.Thread(
                target=self._run,
                args=(kind, stopping),
                name=f"watch-{kind.plural}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads, interrupting open watches; the data stays readable."""
        self._stopping.set()
        with self._lock:
            responses = [k.response for k in self._kinds.values() if k.response is not None]
        for response in responses:
            try:
                response.shutdown()
            except Exception:  # already closed by its thread: nothing to interrupt
                log.debug("closing a watch response failed", exc_info=True)
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    # --- applying what the API server says (public so tests can drive it) ------------------------

    def replace_all(self, plural: str, items: Iterable[Mapping[str, Any]]) -> None:
        """A fresh LIST: the objects of `plural` are exactly `items` now."""
        notify = False
        if plural == INVENTORY:
            listed = [
                item
                for item in items
                if (item.get("metadata") or {}).get("name") == constants.INVENTORY_NAME
            ]
            inventory = _parse(read_inventory, listed[0])[0] if listed else None
            with self._lock:
                if inventory is not None or not listed:  # invalid: the last good one stays
                    notify = _changed(self._inventory, inventory)
                    self._inventory = inventory
                self._mark_listed(plural)
        else:
            nodes: dict[str, GPUNode] = {}
            invalid: dict[str, str] = {}
            for item in items:
                node, error = _parse(read_gpunode, item)
                if node is not None:
                    nodes[node.metadata.name] = node
                else:
                    invalid[_name(item)] = error
            with self._lock:
                self._nodes, self._invalid_nodes = nodes, invalid
                self._mark_listed(plural)
        if notify:
            self._notify()

    def apply_event(self, plural: str, event_type: str, obj: Mapping[str, Any]) -> None:
        """One ADDED, MODIFIED or DELETED watch event."""
        name = _name(obj)
        notify = False
        if plural == INVENTORY:
            if name != constants.INVENTORY_NAME:
                return
            inventory = None if event_type == "DELETED" else _parse(read_inventory, obj)[0]
            if inventory is None and event_type != "DELETED":
                return  # invalid: logged, the last good one stays
            with self._lock:
                notify = _changed(self._inventory, inventory)
                self._inventory = inventory
                self._publish()
        else:
            node, error = (None, "") if event_type == "DELETED" else _parse(read_gpunode, obj)
            with self._lock:
                # copy on write: readers hold the old mappings
                nodes, invalid = dict(self._nodes), dict(self._invalid_nodes)
                nodes.pop(name, None)
                invalid.pop(name, None)
                if node is not None:
                    nodes[name] = node
                elif error:  # not a stale copy of the old object: the node's GPUs are unknown
                    invalid[name] = error
                self._nodes, self._invalid_nodes = nodes, invalid
                self._publish()
        if notify:
            self._notify()

    # --- the informer loop -----------------------------------------------------------------------

    def _run(self, kind: _Kind, stopping: threading.Event) -> None:
        api: client.CustomObjectsApi | None = None
        version: str | None = None
        while not stopping.is_set():
            try:
                if api is None:
                    api_client = self._make_client()
                    api = client.CustomObjectsApi(api_client)
                if version is None:
                    version = self._list(api, kind)
                version = self._watch(api, kind, version, stopping)
            except _ExpiredError as expired:
                log.info("%s: %s; listing again", kind.plural, expired)
                version = None
            except Exception as error:
                if stopping.is_set():
                    break
                delay = self._failed(kind, error)
                stopping.wait(delay)

    def _make_client(self) -> client.ApiClient:
        assert self._factory is not None
        api_client = self._factory()
        with self._lock:
            self._server = kube.server_address(api_client)
        return api_client

    def _list(self, api: client.CustomObjectsApi, kind: _Kind) -> str:
        items: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            page = _request(
                api,
                kind,
                "list continue token expired",
                limit=_LIST_PAGE,
                _continue=token,
                _request_timeout=(_CONNECT_TIMEOUT, 60.0),
            )
            items.extend(page.get("items") or [])
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or None
            if token is None:
                self.replace_all(kind.plural, items)
                return str(metadata.get("resourceVersion", ""))

    def _watch(
        self,
        api: client.CustomObjectsApi,
        kind: _Kind,
        version: str,
        stopping: threading.Event,
    ) -> str:
        timeout = self._timing.watch_timeout_seconds
        response = _request(
            api,
            kind,
            f"resourceVersion {version} expired",
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _preload_content=False,
            _request_timeout=(_CONNECT_TIMEOUT, timeout + 30.0),
        )
        with self._lock:
            kind.response = response
            self._mark_connected(kind)
        try:
            for line in iter_resp_lines(response):
                if stopping.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                event_type = event.get("type")
                obj = event.get("object") or {}
                if event_type == "ERROR":
                    if obj.get("code") == 410:
                        raise _ExpiredError(f"resourceVersion {version} expired")
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if event_type in ("ADDED", "MODIFIED", "DELETED"):
                    self.apply_event(kind.plural, event_type, obj)
        finally:
            with self._lock:
                kind.response = None
            response.release_conn()
        return version

    # --- state bookkeeping (callers hold the lock) ----------------------------------------------

    def _mark_listed(self, plural: str) -> None:
        kind = self._kinds[plural]
        kind.synced = True
        self._mark_connected(kind)

    def _mark_connected(self, kind: _Kind) -> None:
        kind.connected = True
        kind.error = None
        kind.delay = 0.0
        if all(k.connected for k in self._kinds.values()):
            self._down_since = None
        self._publish()

    def _failed(self, kind: _Kind, error: Exception) -> float:
        """Record a failure; return how long to wait before retrying."""
        message = kube.describe_error(error)
        with self._lock:
            server = self._server
            kind.connected = False
            kind.error = message
            kind.delay = min(
                max(kind.delay * 2, self._timing.backoff_initial_seconds),
                self._timing.backoff_max_seconds,
            )
            if self._down_since is None:
                self._down_since = self._utcnow()
            self._publish()
            delay = kind.delay
        log.warning(
            "%s watch on %s failed (%s); retrying in %.1fs", kind.plural, server, message, delay
        )
        return delay

    def _publish(self) -> None:
        kinds = self._kinds.values()
        errors = [k.error for k in kinds if k.error]
        if errors or all(k.synced for k in kinds):
            self._settled.set()
        self._snapshot = replace(
            self._snapshot,
            inventory=self._inventory,
            nodes=MappingProxyType(self._nodes),
            invalid_nodes=MappingProxyType(self._invalid_nodes),
            synced=all(k.synced for k in kinds),
            connected=all(k.connected for k in kinds),
            last_error=errors[-1] if errors else None,
            disconnected_since=self._down_since,
            server=self._server,
        )

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
        for listener in listeners:
            try:
                listener()
            except Exception:  # one bad listener must not stop the watch
                log.exception("inventory listener failed")


def _request(api: client.CustomObjectsApi, kind: _Kind, expired: str, **options: Any) -> Any:
    """LIST or WATCH `kind`; a 410 (the version or continue token expired) means relist."""
    try:
        return api.list_cluster_custom_object(
            constants.GROUP,
            constants.VERSION,
            kind.plural,
            field_selector=kind.field_selector,
            **options,
        )
    except client.ApiException as error:
        if error.status == 410:
            raise _ExpiredError(expired) from error
        raise


def _parse(
    reader: Callable[[Mapping[str, Any]], _M], obj: Mapping[str, Any]
) -> tuple[_M | None, str]:
    """The object as a model, or None and why not (also logged)."""
    try:
        return reader(obj), ""
    except InvalidObjectError as error:
        log.warning("skipping an invalid object: %s", error)
        return None, str(error)


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""


def _changed(old: GPUInventory | None, new: GPUInventory | None) -> bool:
    """Did what readers see change? (resourceVersion alone does not count.)"""
    if old is None or new is None:
        return old is not new
    return (old.spec, old.status) != (new.spec, new.status)
