"""How old is too old: the agent-heartbeat rule and the inventory-status-age rule, in one place.

Pure: no I/O; `now` is passed in. The operator, the MCP server and the tests all read these, so
the published `staleAgents` and what an assistant is told can never disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpu_inventory.api import constants
from gpu_inventory.api.models import AgentState, GPUInventoryStatus


def utc(moment: datetime) -> datetime:
    """`moment` with a timezone (naive times from the API are UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def agent_state(
    *,
    present: bool,
    agent_error: str,
    heartbeat: datetime | None,
    nvml_available: bool,
    stale_after: timedelta,
    now: datetime,
) -> AgentState:
    """The agent's state on one node, from what its GPUNode says.

    `present`: a GPUNode exists. `agent_error`: why its agent data is unusable (empty if usable).
    A heartbeat further in the future than `stale_after` is a broken clock or a broken agent:
    trusting it would keep the node fresh forever, so the report counts as Invalid.
    """
    if not present:
        return "Missing"
    if agent_error:
        return "Invalid"
    if heartbeat is None:
        return "Missing"
    beat = utc(heartbeat)
    if beat - now > stale_after:
        return "Invalid"
    if now - beat > stale_after:
        return "Stale"
    if not nvml_available:
        return "NVMLUnavailable"
    return "Reporting"


AGENT_PROBLEM_STATES = frozenset({"Stale", "Invalid"})
"""Agent states that count in `summary.staleAgents` whatever the node's age (`Missing` counts
only once the node is older than the staleness grace period)."""


def agent_problem(
    state: AgentState, *, node_created: datetime | None, stale_after: timedelta, now: datetime
) -> bool:
    """Whether this agent state counts as a stale agent (Degraded `AgentsStale`)."""
    if state in AGENT_PROBLEM_STATES:
        return True
    if state == "Missing":
        return node_created is None or now - utc(node_created) > stale_after
    return False


MAX_STATUS_AGE = timedelta(seconds=constants.STATUS_MAX_AGE_SECONDS)


def status_age(status: GPUInventoryStatus | None, *, now: datetime) -> timedelta | None:
    """How long ago the operator last confirmed the status (None: never)."""
    if status is None or status.last_sync_time is None:
        return None
    return now - utc(status.last_sync_time)


def status_is_current(status: GPUInventoryStatus | None, *, now: datetime) -> bool:
    """Whether the status was confirmed within `STATUS_MAX_AGE_SECONDS` (a future time is not
    current either: it is a broken clock, and trusting it would hide a dead operator)."""
    age = status_age(status, now=now)
    return age is not None and -MAX_STATUS_AGE <= age <= MAX_STATUS_AGE
