"""The answers behind the MCP tools, computed from one cache snapshot.

Pure: no I/O. Every answer takes the snapshot and `now`, checks its arguments (an
`ArgumentError` whose message starts with the argument's name) and returns a model from
`shapes`; without `limit`, its list holds what fits in `TEXT_BUDGET` characters. When the data
cannot be trusted at all (cache not loaded, API server gone too long, no GPUInventory) it raises
`InventoryUnavailableError` with a message a user can act on; when it can be trusted only with a
caveat (an old status, a short outage) the answer says so in its fields and `warnings`.

Modules: `availability` (may we answer, and how fresh is it), `nodes` (one node's facts),
`arguments` (argument checks and the paging cursor), then one module per answer.
"""

from gpu_inventory.mcpserver.views.arguments import (
    MAX_COUNT,
    MAX_LIMIT,
    TEXT_BUDGET,
    ArgumentError,
)
from gpu_inventory.mcpserver.views.availability import InventoryUnavailableError, not_ready
from gpu_inventory.mcpserver.views.capacity import capacity_answer
from gpu_inventory.mcpserver.views.health import health_answer, recommend
from gpu_inventory.mcpserver.views.inventory import (
    AnswerMemo,
    inventory_answer,
    inventory_resource,
)

__all__ = [
    "MAX_COUNT",
    "MAX_LIMIT",
    "TEXT_BUDGET",
    "AnswerMemo",
    "ArgumentError",
    "InventoryUnavailableError",
    "capacity_answer",
    "health_answer",
    "inventory_answer",
    "inventory_resource",
    "not_ready",
    "recommend",
]
