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
from typing import Any, Final, Protocol


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


XIDS_CLEARED_ANNOTATION: Final = "gpuinventory.io/xids-cleared-at"
"""An RFC 3339 time an admin sets on a Node after fixing its GPUs by hand (a GPU reset the agent
cannot see): the agent forgets every XID it last saw at or before it, and keeps forgetting them
after a restart (`kubectl annotate node N gpuinventory.io/xids-cleared-at=$(date -u +%FT%TZ)`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class NodeFacts:
    """What the agent reads from its own Node."""

    labels: Mapping[str, str]
    boot_id: str = ""
    """Node status.nodeInfo.bootID as the kubelet reports it ("" when it reports none)."""
    xids_cleared_at: datetime | None = None
    """The Node's `XIDS_CLEARED_ANNOTATION`, when it holds a time with a zone."""


def cleared_at(value: str | None) -> datetime | None:
    """The time in an `XIDS_CLEARED_ANNOTATION` value; None when absent or not RFC 3339 with a
    zone (a bad value clears nothing)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class NodeView(Protocol):
    """This agent's Node, as last read."""

    def facts(self, now: datetime) -> NodeFacts | None:
        """The latest facts, re-read when due; None until the Node was read once."""
        ...
