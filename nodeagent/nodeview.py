"""This agent's own Node, kept current: its labels (the GPU Operator's driver-upgrade signals, see
`release.py`), its boot ID (XIDs from an earlier boot are not restored) and the annotation that
clears XIDs by hand (`ports.XIDS_CLEARED_ANNOTATION`).

A watch on this one Node, as the kubelet keeps its own (list and watch with
fieldSelector=metadata.name=<node>, bookmarks on, re-watched from the last resourceVersion when a
watch times out after 5-10 minutes, listed anew on 410 Gone; client-go's reflector does the
same): a label change reaches the agent within a second, and the API server sends one event per
change of the Node (the kubelet writes node status every few minutes), not one read per poll.
At 5,000 nodes a 15 s GET was 333 quorum reads/s of 20-60 KB Nodes.

The watch needs `list` and `watch` on nodes. Where RBAC grants only `get` (403), the reader
falls back to a GET every `poll_seconds` with resourceVersion=0 (served from the API server's
watch cache, not etcd), and says so once. A Node that does not exist (or cannot be read at all)
counts as one without labels, so NVML is still read and reported. Runs on its own thread:
a slow API server never stalls the agent's NVML turns.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import urllib3
from kubernetes import client, watch

from gpu_inventory.nodeagent.ports import XIDS_CLEARED_ANNOTATION, NodeFacts, cleared_at
from gpu_inventory.nodeagent.writer import describe_error

log = logging.getLogger(__name__)

WATCH_SECONDS = (300, 600)
"""A watch's timeoutSeconds, drawn from this range (client-go: minWatchTimeout 5 min, jittered
up to twice that), so 5,000 agents do not re-watch at once."""


class NodeReader:
    """`ports.NodeView` over the API server; `start` it, and `stop` it when done."""

    def __init__(
        self,
        api: client.ApiClient,
        node_name: str,
        *,
        poll_seconds: float = 60.0,
        request_timeout: float = 10.0,
    ) -> None:
        self.node_name = node_name
        self._api = api
        self._core = client.CoreV1Api(api)
        self._poll_seconds = poll_seconds
        self._timeout = request_timeout
        self._selector = f"metadata.name={node_name}"
        self._lock = threading.Lock()
        self._facts: NodeFacts | None = None
        self._on_change: Callable[[], None] = lambda: None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None
        self._last_error = ""
        self.watching = False
        """True while the Node is watched; False before, and after falling back to GETs."""
        self.polling = False
        """True once a 403 made the reader fall back to GETs."""

    # --- ports.NodeView -------------------------------------------------------------------------

    def facts(self, now: datetime) -> NodeFacts | None:
        with self._lock:
            return self._facts

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, on_change: Callable[[], None] = lambda: None) -> None:
        """Keep the facts current on a thread; `on_change` runs after each change of them."""
        self._on_change = on_change
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="node-view", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread: a running watch is cut off (its socket shut down)."""
        self._stop.set()
        running = self._watch
        if running is not None:
            running.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # --- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            if self.polling:
                self._get()
                self._stop.wait(self._poll_seconds)
                continue
            try:
                self._list_and_watch()
                backoff = 1.0
            except client.ApiException as error:
                if self._stop.is_set():
                    return
                if error.status == 403:
                    self._fall_back(error)
                elif error.status == 410:
                    log.debug("Node/%s: watch expired; listing anew", self.node_name)
                else:
                    self._failed(describe_error(error))
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                if self._stop.is_set():
                    return
                self._failed(describe_error(error))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                self.watching = False

    def _list_and_watch(self) -> None:
        listed = self._core.list_node(
            field_selector=self._selector, resource_version="0", _request_timeout=self._timeout
        )
        if listed.items:
            self._set(listed.items[0])
        else:
            self._absent(f'nodes "{self.node_name}" not found')
        version = listed.metadata.resource_version if listed.metadata is not None else None
        while not self._stop.is_set():
            seconds = random.randint(*WATCH_SECONDS)
            self._watch = watch.Watch()
            self.watching = True
            try:
                for event in self._watch.stream(
                    self._core.list_node,
                    field_selector=self._selector,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=seconds,
                    _request_timeout=(self._timeout, seconds + 30),
                ):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._set(event["object"])
                    # BOOKMARK only moves the resourceVersion (the Watch keeps it); DELETED
                    # keeps the last facts: the GPUNode goes with the Node anyway.
            finally:
                version = self._watch.resource_version or version
                self._watch = None

    def _fall_back(self, error: client.ApiException) -> None:
        self.polling = True
        log.warning(
            "Node/%s: not allowed to watch it (%s); reading it every %.0fs instead. Grant the "
            "agent list and watch on nodes for driver upgrades to be seen within a second.",
            self.node_name,
            describe_error(error),
            self._poll_seconds,
        )

    def _get(self) -> None:
        """One GET of the Node, from the API server's watch cache (resourceVersion=0)."""
        try:
            node = _read_node_cached(self._api, self.node_name, self._timeout)
        except client.ApiException as error:
            if error.status in (403, 404):
                self._absent(describe_error(error))
            else:
                self._failed(describe_error(error))
            return
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
            self._failed(describe_error(error))
            return
        self._set(node)

    # --- facts ----------------------------------------------------------------------------------

    def _set(self, node: client.V1Node) -> None:
        metadata = node.metadata
        info = node.status.node_info if node.status is not None else None
        annotations = (metadata.annotations or {}) if metadata is not None else {}
        facts = NodeFacts(
            labels=dict((metadata.labels or {}) if metadata is not None else {}),
            boot_id=(info.boot_id or "") if info is not None else "",
            xids_cleared_at=cleared_at(annotations.get(XIDS_CLEARED_ANNOTATION)),
        )
        if XIDS_CLEARED_ANNOTATION in annotations and facts.xids_cleared_at is None:
            self._failed(f"{XIDS_CLEARED_ANNOTATION} is not an RFC 3339 time with a zone")
        else:
            self._last_error = ""
        self._publish(facts)

    def _absent(self, why: str) -> None:
        """The Node cannot be read: it counts as one without labels until it can."""
        self._failed(why)
        with self._lock:
            known = self._facts is not None
        if not known:
            self._publish(NodeFacts(labels={}))

    def _publish(self, facts: NodeFacts) -> None:
        with self._lock:
            changed = facts != self._facts
            self._facts = facts
        if changed:
            self._on_change()

    def _failed(self, message: str) -> None:
        if message != self._last_error:
            log.warning("Node/%s: cannot read it: %s", self.node_name, message)
            self._last_error = message


def _read_node_cached(api: client.ApiClient, name: str, timeout: float) -> client.V1Node:
    """GET /api/v1/nodes/<name>?resourceVersion=0: any version the watch cache holds. The
    generated `read_node` has no resourceVersion parameter; this is its request plus that."""
    request: Any = api.param_serialize(
        method="GET",
        resource_path="/api/v1/nodes/{name}",
        path_params={"name": name},
        query_params=[("resourceVersion", "0")],
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    method, url, headers, _body, _post = request
    response = api.call_api(method, url, header_params=headers, _request_timeout=timeout)
    response.read()
    found: client.V1Node = api.response_deserialize(
        response_data=response, response_types_map={"200": "V1Node", "default": "object"}
    ).data
    return found
