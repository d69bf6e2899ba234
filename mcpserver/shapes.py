"""What the MCP tools return: pydantic models that become each tool's output schema.

Pure: no I/O. `InventoryAnswer` is a superset of the legacy gateway's `get_gpu_inventory` JSON:
every legacy field keeps its name and meaning (`status`, `cluster_summary.total_nodes`, ...,
`nodes[].node_name`, `pod_name`, `status`, `kubernetes.{labels,conditions,gpu_resources}`,
`gpus[].{index,name,uuid,memory_total,...}`), and new fields are only ever added. Names are
snake_case on the wire, as the legacy tool had them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gpu_inventory.api.models import AgentState, HealthStatus, Source

NodeStatus = Literal["ready", "not_ready", "unknown"]
Severity = Literal["degraded", "unhealthy"]
"""Which sick GPUs get_gpu_health lists: degraded and worse, or unhealthy only."""
RecommendedAction = Literal[
    "None",
    "RestartApplication",
    "Investigate",
    "RecoverIMEXDomain",
    "ResetGPU",
    "DrainAndResetGPU",
    "RebootNode",
    "ReplaceGPU",
]
"""From least to most disruptive; a GPU's recommendation is the most disruptive signal it has."""


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- shared pieces -----------------------------------------------------------------------------


class ResourceUsage(_Out):
    """Scheduler numbers for one extended resource name (of one source in the cluster's rows)."""

    name: str
    source: Source = Field(
        description="DevicePlugin: Node allocatable; DRA: a DRA driver's ResourceSlices."
    )
    capacity: int
    allocatable: int
    allocated: int
    available: int


class ProductUsage(_Out):
    product: str
    nodes: int
    gpus: int
    allocatable: int
    allocated: int
    available: int


class ConditionOut(_Out):
    """One GPUInventory condition (Ready, Degraded, Reconciling, Stalled)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""


class ClusterSummary(_Out):
    """Whole-cluster totals from the GPUInventory; filters never change them."""

    # Legacy fields.
    total_nodes: int = Field(description="GPU nodes.")
    total_gpus: int = Field(description="Physical GPUs.")
    gpus_allocatable: int = Field(description="Allocatable units of the primary resource.")
    gpus_allocated: int = Field(description="Units requested by pods bound to GPU nodes.")
    gpus_available: int = Field(description="allocatable - allocated, floored at 0.")
    gpu_types: list[str] = Field(description='GPU products as NVML names them ("Tesla T4").')
    # Additions.
    primary_resource: str
    gpu_capacity: int
    ready_nodes: int
    unhealthy_gpus: int
    stale_agents: int
    resources: list[ResourceUsage] = Field(description="One row per GPU resource name.")
    products: list[ProductUsage]
    conditions: list[ConditionOut]


# --- get_gpu_inventory ---------------------------------------------------------------------------


class GPUResources(_Out):
    """The node's numbers for the primary resource (legacy shape, plus `available`)."""

    capacity: int = Field(description="0 when the node advertises none.")
    allocatable: int
    allocated: int
    available: int


class NodeKubernetes(_Out):
    labels: dict[str, str] = Field(description="GPU-relevant node labels only.")
    conditions: dict[str, bool] = Field(
        description="Every condition on the Node (Node Problem Detector's and GPU health "
        "conditions too): True when its status is True."
    )
    gpu_resources: GPUResources
    all_gpu_resources: list[ResourceUsage] = Field(description="Every GPU resource name.")


_UNREPORTED = "; null when NVML does not report it on this device."


class GPUOut(_Out):
    # The legacy answer's fields: index, name, uuid, memory_total, temperature, utilization.
    # The three readings are null (never a made-up number) where NVML does not support them.
    index: int
    name: str
    uuid: str
    memory_total: int | None = Field(description="Bytes" + _UNREPORTED)
    temperature: int | None = Field(description="Degrees Celsius" + _UNREPORTED)
    utilization: int | None = Field(description="GPU utilisation, percent" + _UNREPORTED)
    # Additions.
    memory_used: int | None = Field(description="Bytes" + _UNREPORTED)
    health: HealthStatus
    health_reasons: list[str]
    utilization_memory: int | None
    power_draw_watts: float | None
    power_limit_watts: float | None
    pci_bus_id: str
    mig_enabled: bool
    recent_xids: int = Field(description="XID events the agent still holds for this GPU.")


class NodeOut(_Out):
    # Legacy fields.
    node_name: str
    pod_name: str = Field(description="The node agent's pod; empty without an agent.")
    status: NodeStatus
    kubernetes: NodeKubernetes | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Absent when include_k8s_metadata is false.",
    )
    gpus: list[GPUOut]
    # Additions.
    product: str
    gpu_count: int = Field(description="Physical GPUs.")
    unhealthy_gpus: int
    allocatable: int = Field(description="Allocatable units of the primary resource.")
    allocated: int
    available: int
    agent_state: AgentState
    last_heartbeat: datetime | None
    driver_version: str | None
    cuda_version: str | None
    source: Source = Field(description="Who advertises the node's GPUs.")


class _Freshness(_Out):
    """How far every answer can be trusted (the API's status-age rule, `api.freshness`)."""

    inventory_current: bool = Field(
        description="The operator confirmed the inventory recently; if false, see warnings."
    )
    inventory_age_seconds: float | None = Field(
        description="Seconds since the operator last confirmed the inventory (null: unknown)."
    )
    warnings: list[str] = Field(description="Why the answer may be stale or incomplete.")


class InventoryAnswer(_Freshness):
    status: Literal["success"] = "success"
    cluster_summary: ClusterSummary
    nodes: list[NodeOut]
    nodes_matched: int = Field(description="Nodes matching the filters, over all pages.")
    truncated: bool = Field(description="True when more pages follow (see next_cursor).")
    next_cursor: str | None = Field(
        description="Pass as `cursor` (same filters) for the next page; null on the last page."
    )


# --- get_gpu_health ------------------------------------------------------------------------------


class XidOut(_Out):
    xid: int
    time: datetime
    xid_class: str = Field(description="NVIDIA's XID class (Memory, NVLink, Hardware, ...).")
    action: str = Field(description="What NVIDIA's XID catalogue recommends.")


class GPUHealthOut(_Out):
    node_name: str
    index: int
    uuid: str
    name: str
    health: HealthStatus
    reasons: list[str]
    recommended_action: RecommendedAction
    action_reason: str = Field(description="Which signal the recommendation comes from.")
    driver_recovery_action: str | None = Field(description="NVML's own verdict, when reported.")
    recent_xids: list[XidOut] = Field(description="Newest first.")
    last_event_time: datetime | None
    agent_stale: bool = Field(description="The agent's readings are older than allowed.")


class HealthAnswer(_Freshness):
    status: Literal["success"] = "success"
    unhealthy_gpus: int = Field(description="In the whole cluster.")
    degraded_gpus: int = Field(description="In the whole cluster.")
    gpus: list[GPUHealthOut] = Field(
        description="Sick GPUs of the asked severity, newest event first; the first of them "
        "when truncated."
    )
    gpus_matched: int = Field(description="Sick GPUs of the asked severity, listed or not.")
    truncated: bool = Field(
        description="More GPUs matched than are listed: ask with a larger limit (at most 500), "
        "or severity='unhealthy'."
    )
    nodes_not_ready: list[str] = Field(description="GPU nodes that are NotReady, by name.")
    nodes_not_ready_count: int = Field(description="All of them, listed or not.")
    stale_agents: list[str] = Field(description="Nodes whose agent stopped reporting, by name.")
    stale_agents_count: int = Field(description="All of them, listed or not.")


# --- find_gpu_capacity ---------------------------------------------------------------------------


RequestForm = Literal["ExtendedResource", "ResourceClaim"]


class CapacityNodeOut(_Out):
    node_name: str
    product: str
    available: int = Field(description="Free units of the primary resource.")
    allocatable: int
    allocated: int
    leftover: int = Field(description="Units still free after placing the pod.")
    gpu_count: int
    unhealthy_gpus: int
    source: Source = Field(description="Who advertises the node's GPUs.")
    request_as: RequestForm = Field(
        description=(
            "How a pod asks for these GPUs: ExtendedResource (resources.limits, served by the"
            " device plugin) or ResourceClaim (a claim of the DRA driver's DeviceClass, e.g."
            " NVIDIA's gpu.nvidia.com; an extended-resource request reaches a DRA node only"
            " where a DeviceClass maps that name, alpha DRAExtendedResource)."
        )
    )


class CapacityAnswer(_Freshness):
    status: Literal["success"] = "success"
    count: int
    product: str | None
    primary_resource: str
    nodes: list[CapacityNodeOut] = Field(
        description="Tightest fit first; the best of them when truncated."
    )
    nodes_matched: int = Field(description="Nodes where the pod fits, listed or not.")
    truncated: bool = Field(
        description="More nodes fit than are listed: ask with a larger limit (at most 500)."
    )
    largest_free_block: int = Field(description="Most free units on one eligible Ready node.")
    message: str


# --- resource gpuinventory://cluster -------------------------------------------------------------


class InventoryResource(_Freshness):
    status: Literal["success"] = "success"
    cluster_summary: ClusterSummary
