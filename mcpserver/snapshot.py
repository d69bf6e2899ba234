"""The immutable view of the watch cache that every tool call reads.

Pure: no I/O. The cache swaps in a new `Snapshot` on each change (copy on write), so a tool call
takes one reference and never waits on a lock or on the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from gpu_inventory.api.models import GPUInventory, GPUNode


@dataclass(frozen=True)
class Snapshot:
    """What the cache knows, and how far it can be trusted."""

    inventory: GPUInventory | None = None
    """The `cluster` GPUInventory, or None when it does not exist (operator not running yet)."""

    nodes: Mapping[str, GPUNode] = field(default_factory=lambda: MappingProxyType({}))
    """Every valid GPUNode by name; invalid objects are left out (see `invalid_nodes`)."""

    invalid_nodes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """GPUNodes that do not fit the API models, by name: why (answers warn about them)."""

    synced: bool = False
    """Both kinds have been listed at least once, so an absent object is really absent."""

    connected: bool = False
    """Both watches are open right now."""

    last_error: str | None = None
    """The latest list/watch failure, sanitised for users (no credentials, no bodies)."""

    disconnected_since: datetime | None = None
    """When the cache lost contact with the API server; None while connected."""

    server: str = ""
    """The API server's address, for messages."""
