"""What the agent needs from the cluster, as interfaces: a place to write its status and read
back what it wrote before, and a view of its own Node.

Pure: no I/O, no client library, so the agent's loop (and `--once`, which has no cluster) import
nothing from Kubernetes. `writer.GPUNodeWriter` and `nodeview.NodeReader` implement these over
the API server; tests use recorders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class WriteOutcome:
    """Whether the status was written; why not is logged by the writer, and the caller backs off."""

    ok: bool


class PreviousUnavailableError(Exception):
    """The GPUNode's current status cannot be read right now (the message says why); try later."""


class StatusSink(Protocol):
    """Where reports go: `writer.GPUNodeWriter`, or a recorder in tests."""

    def write(self, patch: dict[str, Any]) -> WriteOutcome: ...

    def previous(self) -> Mapping[str, Any] | None:
        """The status this node's GPUNode holds now (None: there is no GPUNode yet); raises
        `PreviousUnavailableError` when it cannot be read now."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class NodeFacts:
    """What the agent reads from its own Node."""

    labels: Mapping[str, str]
    boot_id: str = ""
    """Node status.nodeInfo.bootID as the kubelet reports it ("" when it reports none)."""


class NodeView(Protocol):
    """This agent's Node, as last read."""

    def facts(self, now: datetime) -> NodeFacts | None:
        """The latest facts, re-read when due; None until the Node was read once."""
        ...
