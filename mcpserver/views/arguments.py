"""Argument checks, page sizes and the paging cursor.

Pure: no I/O. Every failure is an `ArgumentError` whose message starts with the argument's name
and says what would be accepted. Unknown `node` or `product` values are errors that list valid
values, never an empty answer: an assistant that typed a wrong name should learn that, not
conclude the cluster has no such GPUs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from gpu_inventory.mcpserver.views.nodes import GPUNodes, tokens

TEXT_BUDGET = 30_000
"""Characters of text (the answer's compact JSON) an answer asked without `limit` stays within,
about 10,000 tokens of JSON. Claude Code warns about MCP output from 10,000 tokens and refuses
more than 25,000 by default (MAX_MCP_OUTPUT_TOKENS); at 30,000 characters a production node
with 8 GPUs, ~40 GPU Feature Discovery labels and 12 conditions (about 6 KB) fits four or
five to a page. The fixed part of an answer (the whole-cluster summary, counts, warnings,
the cursor) is counted too."""

MAX_LIMIT = 500
"""Largest page an explicit `limit` asks for: about 3 MB of JSON with 8 GPUs per node."""

MAX_COUNT = 1024
_SHOWN_VALUES = 10
_CURSOR_VERSION = 1
_RESERVE = 600
"""Characters kept free for what is only known once the page is chosen (the cursor, counts)."""
_T = TypeVar("_T")
_Answer = TypeVar("_Answer", bound=BaseModel)


class ArgumentError(ValueError):
    """An argument the caller can correct; the message starts with the argument's name. Only
    this becomes a "bad argument" tool error: any other ValueError is a bug in the server."""


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
        raise ArgumentError(f"{argument} must be a non-empty string or omitted")
    return value


def check_range(argument: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ArgumentError(f"{argument} must be between {low} and {high}, got {value}")


def check_limit(limit: int | None) -> None:
    if limit is not None:
        check_range("limit", limit, 1, MAX_LIMIT)


def room(budget: int, fixed: BaseModel) -> int:
    """Characters left for a page's items in `budget`, once the answer around them (`fixed`,
    the answer with no items) and what is only known later (the cursor, counts) are counted."""
    return budget - len(fixed.model_dump_json()) - _RESERVE


def fit(items: Sequence[_T], size: Callable[[_T], int], *, limit: int | None, room: int) -> int:
    """How many of `items` go on a page.

    With `limit`, at most `limit`. Without, as many as fit in `room` characters (each item's
    `size`, plus a comma between items), and always at least one, so a page never comes back
    empty while items remain. `size` is only called until the page is full.
    """
    if limit is not None:
        return min(limit, len(items))
    used = 0
    for taken, item in enumerate(items):
        used += size(item) + 1
        if taken and used > room:
            return taken
    return len(items)


def paged(
    answer: _Answer, field: str, items: Sequence[BaseModel], *, limit: int | None, budget: int
) -> _Answer:
    """`answer` with its list `field` holding the first of `items` that `fit`, and `truncated`
    saying whether any were left out."""
    taken = fit(
        items, lambda item: len(item.model_dump_json()), limit=limit, room=room(budget, answer)
    )
    return answer.model_copy(update={field: list(items[:taken]), "truncated": taken < len(items)})


def check_node(node: str, nodes: GPUNodes) -> None:
    if node in nodes:
        return
    names = nodes.names()
    if not names:
        raise ArgumentError(f"node {node!r} is not a GPU node: the inventory has no GPU nodes")
    raise ArgumentError(
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
        raise ArgumentError(
            f"product {product!r} matches no GPU: the inventory has no GPU products"
        )
    raise ArgumentError(
        f"product {product!r} matches no GPU product in the cluster; products are: "
        + listing(nodes.gpu_types())
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
        """The cursor in `text`, or an `ArgumentError` naming the `cursor` argument."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("v") != _CURSOR_VERSION:
                raise ValueError(data)
            after, fingerprint = data["after"], data["f"]
            if not isinstance(after, str) or not isinstance(fingerprint, str):
                raise ValueError(data)
        except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise ArgumentError(
                "cursor is not a cursor this server returned: pass next_cursor from the "
                "previous answer unchanged, or omit cursor to start from the first node"
            ) from None
        if fingerprint != filters:
            raise ArgumentError(
                "cursor belongs to a query with other filters (node, product or "
                "only_unhealthy_or_degraded): repeat the filters of the call that returned it, "
                "or omit cursor to start from the first node"
            )
        return cls(after, fingerprint)


def filters_fingerprint(*values: object) -> str:
    """A short, stable digest of the filters a cursor is valid for."""
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]
