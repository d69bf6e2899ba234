"""Argument checks and the paging cursor.

Pure: no I/O. Every failure is a `ValueError` whose message starts with the argument's name and
says what would be accepted. Unknown `node` or `product` values are errors that list valid
values, never an empty answer: an assistant that typed a wrong name should learn that, not
conclude the cluster has no such GPUs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gpu_inventory.api.models import MAX_NODES
from gpu_inventory.mcpserver.views.nodes import GPUNodes, tokens

DEFAULT_LIMIT = 10
"""Nodes per page by default. One node with 8 GPUs and its Kubernetes metadata is about 3.2 KB
of compact JSON and 5 KB as the SDK's text content (indented), so a default page is about 55 KB
of text (roughly 15,000 tokens): enough to see a cluster's shape, small enough for a model's
context. `cluster_summary` always covers every node."""

MAX_LIMIT = 500
"""Largest page: about 1.6 MB of JSON with 8 GPUs per node."""

MAX_COUNT = 1024
_SHOWN_VALUES = 10
_CURSOR_VERSION = 1


def product_matches(query: str, names: Iterable[str]) -> bool:
    """True when the query's words appear, in order, among one name's words.

    Case, spaces, dashes and underscores do not matter, and a word must match whole, so "A100"
    matches "NVIDIA-A100-SXM4-80GB" and "nvidia a100 80gb" does too, but "A10" does not.
    """
    wanted = tokens(query)
    for name in names:
        have = iter(tokens(name))
        if wanted and all(word in have for word in wanted):
            return True
    return False


def listing(values: Sequence[str]) -> str:
    shown = ", ".join(values[:_SHOWN_VALUES])
    more = len(values) - _SHOWN_VALUES
    return shown + (f" (and {more} more)" if more > 0 else "")


def check_text(argument: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise ValueError(f"{argument} must be a non-empty string or omitted")
    return value


def check_range(argument: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{argument} must be between {low} and {high}, got {value}")


def check_node(node: str, nodes: GPUNodes) -> None:
    if node in nodes:
        return
    names = nodes.names()
    if not names:
        raise ValueError(f"node {node!r} is not a GPU node: the inventory has no GPU nodes")
    raise ValueError(
        f"node {node!r} is not a GPU node in the inventory; GPU nodes are: " + listing(names)
    )


def filter_product(product: str, names: Iterable[str], nodes: GPUNodes) -> list[str]:
    """The names of nodes with that product; an error listing products when none has it."""
    verdicts: dict[str, bool] = {}

    def matches(node: str) -> bool:
        for name in nodes.product_names(node):
            if name not in verdicts:
                verdicts[name] = product_matches(product, (name,))
            if verdicts[name]:
                return True
        return False

    kept = [n for n in names if matches(n)]
    if kept:
        return kept
    known = nodes.known_products()
    if product_matches(product, known):
        return kept  # a real product, just not among these nodes
    if not known:
        raise ValueError(f"product {product!r} matches no GPU: the inventory has no GPU products")
    raise ValueError(
        f"product {product!r} matches no GPU product in the cluster; products are: "
        + listing(known)
    )


# --- the paging cursor ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after node `after`, for the same filters.

    Keyset paging over the name-sorted node list: a node added or removed between two calls
    never makes a page skip or repeat another node. The cursor is opaque to clients (base64 of
    a small JSON object) and carries a fingerprint of the filters, so a cursor replayed with
    other filters is refused rather than silently answering a different question.
    """

    after: str
    filters: str

    def encode(self) -> str:
        raw = json.dumps({"v": _CURSOR_VERSION, "after": self.after, "f": self.filters})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, *, filters: str) -> Cursor:
        """The cursor in `text`, or a `ValueError` naming the `cursor` argument."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("v") != _CURSOR_VERSION:
                raise ValueError(data)
            after, fingerprint = data["after"], data["f"]
            if not isinstance(after, str) or not isinstance(fingerprint, str):
                raise ValueError(data)
        except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise ValueError(
                "cursor is not a cursor this server returned: pass next_cursor from the "
                "previous answer unchanged, or omit cursor to start from the first node"
            ) from None
        if fingerprint != filters:
            raise ValueError(
                "cursor belongs to a query with other filters (node, product or "
                "only_unhealthy_or_degraded): repeat the filters of the call that returned it, "
                "or omit cursor to start from the first node"
            )
        return cls(after, fingerprint)


def filters_fingerprint(*values: object) -> str:
    """A short, stable digest of the filters a cursor is valid for."""
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


assert MAX_LIMIT <= MAX_NODES
