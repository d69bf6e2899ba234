"""`get_gpu_health`: sick GPUs, newest event first, with the one action each calls for.

Pure: no I/O. The server only reports: it never cordons, drains or resets.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from gpu_inventory.api.models import GPU, RecoveryAction, XidAction
from gpu_inventory.mcpserver import shapes
from gpu_inventory.mcpserver.snapshot import Snapshot
from gpu_inventory.mcpserver.views import arguments
from gpu_inventory.mcpserver.views.availability import require_inventory
from gpu_inventory.mcpserver.views.nodes import GPUNodes, NodeFacts, is_sick, xid_events

ACTION_RANK: Final[dict[shapes.RecommendedAction, int]] = {
    "None": 0,
    "RestartApplication": 1,
    "Investigate": 2,
    "RecoverIMEXDomain": 3,
    "ResetGPU": 4,
    "DrainAndResetGPU": 5,
    "RebootNode": 6,
    "ReplaceGPU": 7,
}
"""Least to most disruptive: a GPU's recommendation is the most disruptive of its signals."""

# NVML's recovery action (nvmlDeviceGetFieldValues NVML_FI_DEV_GET_GPU_RECOVERY_ACTION,
# nvmlDeviceGpuRecoveryAction_t in nvml.h / nvidia-ml-py's NVML_GPU_RECOVERY_ACTION_*), as the
# agent names it (api.models.RecoveryAction), on our vocabulary. Every value is mapped; a test
# walks the API's Literal so a new value fails there, not in a user's tool call.
DRIVER_ACTIONS: Final[dict[RecoveryAction, shapes.RecommendedAction]] = {
    "None": "None",
    "GpuReset": "ResetGPU",
    "NodeReboot": "RebootNode",
    "DrainP2P": "DrainAndResetGPU",
    "DrainAndReset": "DrainAndResetGPU",
    # The NVLink/IMEX domain the GPU belongs to must be recovered (multi-node NVLink systems).
    "RecoverImexDomain": "RecoverIMEXDomain",
    # A reset of the GPU's PCIe link (a bus-level GPU reset): the GPU, not the node.
    "BusReset": "ResetGPU",
    # The whole system, not only the GPU, must restart.
    "SystemReboot": "RebootNode",
}
# The action NVIDIA's XID catalogue gives an XID, as the agent classifies it.
XID_ACTIONS: Final[dict[XidAction, shapes.RecommendedAction]] = {
    "None": "None",
    "RestartApplication": "RestartApplication",
    "ResetGPU": "ResetGPU",
    "RebootNode": "RebootNode",
    "Investigate": "Investigate",
}
_SEVERITY: Final = {"Unhealthy": 0, "Degraded": 1}
NAMES_SHOWN: Final = 50
"""NotReady nodes and silent agents listed by name (all are counted): a fleet-wide outage
must not turn the health answer into a list of every node."""


def recommend(gpu: GPU) -> tuple[shapes.RecommendedAction, str]:
    """The most disruptive action any of the GPU's signals calls for, and which signal it was.

    Signals: NVML's recovery action (the driver's own verdict), row-remapping failure (the GPU
    needs replacing) or pending remap / page retirement (a reset applies it), and the action
    NVIDIA's XID catalogue gives for each recent XID. A sick GPU with none of these gets
    "Investigate".
    """
    candidates: list[tuple[shapes.RecommendedAction, str]] = []
    if gpu.recovery_action is not None:
        candidates.append(
            (DRIVER_ACTIONS[gpu.recovery_action], f"driver recovery action {gpu.recovery_action}")
        )
    rows = gpu.remapped_rows
    if rows is not None and rows.failure:
        candidates.append(("ReplaceGPU", "row remapping failed"))
    if rows is not None and rows.pending:
        candidates.append(("ResetGPU", "row remapping pending until a GPU reset"))
    if gpu.retired_pages is not None and gpu.retired_pages.pending:
        candidates.append(("ResetGPU", "page retirement pending until a GPU reset"))
    for event in xid_events(gpu):
        candidates.append((XID_ACTIONS[event.action], f"XID {event.xid} ({event.class_})"))
    if not candidates or all(action == "None" for action, _ in candidates):
        if is_sick(gpu):
            reasons = "; ".join(gpu.health.reasons) or "no reason given"
            return "Investigate", f"health {gpu.health.status}: {reasons}"
        return "None", "no signal"
    # max() keeps the first of equals, so the earliest signal listed above names the reason.
    return max(candidates, key=lambda c: ACTION_RANK[c[0]])


def gpu_health_out(facts: NodeFacts, gpu: GPU, *, agent_stale: bool) -> shapes.GPUHealthOut:
    xids = sorted(xid_events(gpu), key=lambda x: x.time, reverse=True)
    action, why = recommend(gpu)
    return shapes.GPUHealthOut(
        node_name=facts.name,
        index=gpu.index,
        uuid=gpu.uuid,
        name=gpu.name,
        health=gpu.health.status,
        reasons=list(gpu.health.reasons),
        recommended_action=action,
        action_reason=why,
        driver_recovery_action=gpu.recovery_action,
        recent_xids=[
            shapes.XidOut(xid=x.xid, time=x.time, xid_class=x.class_, action=x.action) for x in xids
        ],
        last_event_time=xids[0].time if xids else None,
        agent_stale=agent_stale,
    )


def health_answer(
    snapshot: Snapshot,
    *,
    now: datetime,
    max_staleness_seconds: float,
    severity: shapes.Severity = "degraded",
    limit: int | None = None,
    text_budget: int = arguments.TEXT_BUDGET,
) -> shapes.HealthAnswer:
    """Sick GPUs, newest event first, with the action each one calls for.

    `severity` "degraded" lists unhealthy and degraded GPUs, "unhealthy" only unhealthy ones;
    the counts always cover both. GPUs with no timestamped event follow, worst health first,
    then by node and index. The list holds `limit` GPUs, or without a limit as many as fit in
    `text_budget` characters; `gpus_matched` and `truncated` say what was left out.
    """
    arguments.check_limit(limit)
    trusted = require_inventory(snapshot, now=now, max_staleness_seconds=max_staleness_seconds)
    stale_after = timedelta(seconds=trusted.inventory.spec.agent_stale_after_seconds)
    nodes = GPUNodes.of(snapshot.nodes, trusted.inventory, trusted.status)
    facts = [nodes.facts(n) for n in nodes.names()]
    sick: list[shapes.GPUHealthOut] = []
    stale: list[str] = []
    for f in facts:
        agent_stale = f.agent_problem(stale_after=stale_after, now=now)
        if agent_stale:
            stale.append(f.name)
        sick.extend(gpu_health_out(f, g, agent_stale=agent_stale) for g in f.gpus if is_sick(g))
    shown = [g for g in sick if severity == "degraded" or g.health == "Unhealthy"]
    dated = sorted(
        (g for g in shown if g.last_event_time is not None),
        key=lambda g: (g.last_event_time, -_SEVERITY[g.health]),
        reverse=True,
    )
    undated = sorted(
        (g for g in shown if g.last_event_time is None),
        key=lambda g: (_SEVERITY[g.health], g.node_name, g.index),
    )
    ordered = dated + undated
    not_ready = [f.name for f in facts if f.ready is False]
    answer = shapes.HealthAnswer(
        unhealthy_gpus=sum(g.health == "Unhealthy" for g in sick),
        degraded_gpus=sum(g.health == "Degraded" for g in sick),
        gpus=[],
        gpus_matched=len(ordered),
        truncated=False,
        nodes_not_ready=not_ready[:NAMES_SHOWN],
        nodes_not_ready_count=len(not_ready),
        stale_agents=stale[:NAMES_SHOWN],
        stale_agents_count=len(stale),
        **trusted.freshness(),
    )
    return arguments.paged(answer, "gpus", ordered, limit=limit, budget=text_budget)
