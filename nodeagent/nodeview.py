"""Read this agent's own Node: its labels (the GPU Operator's driver-upgrade signals, see
`release.py`) and its boot ID (XIDs from an earlier boot are not restored).

One GET of one object every `poll_seconds`, from the agent's loop: the agent's RBAC allows `get`
on nodes and nothing broader (a watch would need `list` on every Node). Failures are logged
once and the last facts kept; a Node the agent may not read (403) or that does not exist (404)
counts as one without labels, so NVML is still read and reported.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import urllib3
from kubernetes import client

from gpu_inventory.nodeagent.ports import NodeFacts
from gpu_inventory.nodeagent.writer import describe_error

log = logging.getLogger(__name__)


class NodeReader:
    """`ports.NodeView` over the API server."""

    def __init__(
        self,
        api: client.ApiClient,
        node_name: str,
        *,
        poll_seconds: float = 15.0,
        request_timeout: float = 10.0,
    ) -> None:
        self.node_name = node_name
        self._core = client.CoreV1Api(api)
        self._poll = timedelta(seconds=poll_seconds)
        self._timeout = request_timeout
        self._facts: NodeFacts | None = None
        self._read_at: datetime | None = None
        self._last_error = ""

    def facts(self, now: datetime) -> NodeFacts | None:
        if self._read_at is None or now - self._read_at >= self._poll:
            self._read_at = now
            self._refresh()
        return self._facts

    def _refresh(self) -> None:
        try:
            node = self._core.read_node(self.node_name, _request_timeout=self._timeout)
        except client.ApiException as error:
            self._failed(describe_error(error))
            if error.status in (403, 404) and self._facts is None:
                self._facts = NodeFacts(labels={})
            return
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self._failed(describe_error(error))
            return
        info = node.status.node_info if node.status is not None else None
        self._facts = NodeFacts(
            labels=dict(node.metadata.labels or {}),
            boot_id=(info.boot_id or "") if info is not None else "",
        )
        self._last_error = ""

    def _failed(self, message: str) -> None:
        if message != self._last_error:
            log.warning("Node/%s: cannot read it: %s", self.node_name, message)
            self._last_error = message
