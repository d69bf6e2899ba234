"""The GPUInventory and GPUNode API: the single source of truth for the CRDs in `crds/`.

Pure: no I/O. Field names are snake_case in Python and camelCase on the wire. Every list and
string is bounded (`maxItems`, `maxLength`), so a broken or hostile agent cannot write an object
that approaches etcd's 1.5 MiB request limit; `tests/unit/api/test_crd_size.py` proves the bound.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)
from pydantic.alias_generators import to_camel

from gpu_inventory.api import constants

# Bounds, named once so the size test and the schema agree.
MAX_GPUS_PER_NODE = 32
MAX_NODES = 10_000
MAX_RESOURCE_NAMES = 32
MAX_LABELS = 64
MAX_PRODUCTS = 128
MAX_XIDS = 16
MAX_XID_COUNT = 2**31 - 1  # an XID entry's count saturates here (int32, like NVML's counters)
MAX_REASONS = 8
MAX_MIG_INSTANCES = 8
MAX_NVLINKS = 36  # NVML_NVLINK_MAX_LINKS in nvidia-ml-py 13.x
MAX_CONDITIONS = 16
MAX_NODE_CONDITIONS = 32
"""Node conditions copied into a GPUNode: the built-in five, Node Problem Detector's and GPU
health tools' own, bounded against a Node carrying hundreds."""
MAX_MESSAGE = 1024
MAX_REASON = 256

ShortStr = Annotated[str, StringConstraints(max_length=64)]
NameStr = Annotated[str, StringConstraints(max_length=253)]
LabelKey = Annotated[str, StringConstraints(max_length=317)]
LabelValue = Annotated[str, StringConstraints(max_length=63)]
MessageStr = Annotated[str, StringConstraints(max_length=MAX_MESSAGE)]
ReasonStr = Annotated[str, StringConstraints(max_length=MAX_REASON)]
Count = Annotated[int, Field(ge=0)]
Percent = Annotated[int, Field(ge=0, le=100)]


def map_list(key: str) -> dict[str, Any]:
    """Schema extension: a list merged by `key`, as `listType=map` in Go types."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}


def clip(text: str, limit: int) -> str:
    """`text` cut to fit a string bound of the schema, marked with "..." when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


HealthStatus = Literal["Healthy", "Degraded", "Unhealthy", "Unknown"]
AgentState = Literal["Reporting", "Stale", "Missing", "NVMLUnavailable", "Invalid"]
"""Invalid: the GPUNode holds agent data the operator cannot use (a heartbeat from the future)."""
ConditionStatus = Literal["True", "False", "Unknown"]
RecoveryAction = Literal[
    "None",
    "GpuReset",
    "NodeReboot",
    "DrainP2P",
    "DrainAndReset",
    "RecoverImexDomain",
    "BusReset",
    "SystemReboot",
]
XidClass = Literal[
    "Application", "Memory", "NVLink", "Hardware", "Driver", "Informational", "Unknown"
]
XidAction = Literal["None", "RestartApplication", "ResetGPU", "RebootNode", "Investigate"]
Source = Literal["DevicePlugin", "DRA"]
"""Who advertises a node's GPUs: a device plugin (Node `status.allocatable`), or a DRA driver
(ResourceSlices of a driver in `spec.draDrivers`)."""


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are dropped on read."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict for the API server (aliases, no unset optionals)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- Conditions --------------------------------------------------------------------------------


class Condition(WireModel):
    """The shape of metav1.Condition, with its validation."""

    type: Annotated[
        str,
        StringConstraints(
            min_length=1,
            max_length=316,
            pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        ),
    ]
    status: ConditionStatus
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    last_transition_time: datetime
    reason: Annotated[
        str,
        StringConstraints(
            min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
        ),
    ]
    message: Annotated[str, StringConstraints(max_length=32768)] = ""


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=MAX_CONDITIONS,
        json_schema_extra=map_list("type"),
    ),
]


# --- GPUInventory ------------------------------------------------------------------------------


class GPUInventorySpec(WireModel):
    """What counts as a GPU and which node labels matter. Every field is optional."""

    resource_names: Annotated[
        list[NameStr],
        Field(
            max_length=MAX_RESOURCE_NAMES,
            description="Extended resources that count as GPUs; a trailing '*' is a wildcard.",
        ),
    ] = list(constants.DEFAULT_RESOURCE_NAMES)
    primary_resource: Annotated[
        NameStr, Field(description="The resource the headline numbers count.")
    ] = constants.PRIMARY_RESOURCE
    label_prefixes: Annotated[
        list[LabelKey],
        Field(
            max_length=MAX_LABELS,
            description="Node labels whose key starts with one of these are GPU-relevant.",
        ),
    ] = list(constants.DEFAULT_LABEL_PREFIXES)
    agent_stale_after_seconds: Annotated[
        int,
        Field(
            ge=10,
            le=86_400,
            description="A GPUNode whose agent heartbeat is older than this is stale.",
        ),
    ] = constants.DEFAULT_AGENT_STALE_AFTER_SECONDS
    dra_drivers: Annotated[
        list[NameStr],
        Field(
            max_length=constants.MAX_DRA_DRIVERS,
            description=(
                "DRA drivers whose ResourceSlice devices count as GPUs (resource.k8s.io/v1)."
                " Devices of other drivers (e.g. compute-domain.nvidia.com) are not GPUs."
            ),
        ),
    ] = list(constants.DEFAULT_DRA_DRIVERS)
    max_node_rows: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_NODES,
            description=(
                "status.nodes lists every GPU node up to this many; beyond it only the nodes"
                " that need attention (up to this many), and nodesOmitted counts the rest."
                " Every node's detail stays in its GPUNode."
            ),
        ),
    ] = constants.DEFAULT_MAX_NODE_ROWS


class ResourceTotals(WireModel):
    """Scheduler numbers for one extended resource name, over the nodes of one source."""

    name: NameStr
    source: Annotated[
        Source, Field(description="DevicePlugin: Node allocatable; DRA: ResourceSlices.")
    ] = "DevicePlugin"
    capacity: Count = 0
    allocatable: Count = 0
    allocated: Count = 0
    available: Count = 0


class ProductTotals(WireModel):
    """Totals for one GPU product (from `nvidia.com/gpu.product` or the agents)."""

    product: NameStr
    nodes: Count = 0
    gpus: Count = 0
    allocatable: Count = 0
    allocated: Count = 0
    available: Count = 0


class InventorySummary(WireModel):
    """The headline numbers; counts of the primary resource unless named otherwise."""

    nodes: Count = 0
    ready_nodes: Count = 0
    gpus: Annotated[
        int, Field(ge=0, description="Physical GPUs, from agents or nvidia.com/gpu.count.")
    ] = 0
    capacity: Count = 0
    allocatable: Count = 0
    allocated: Count = 0
    available: Count = 0
    unhealthy_gpus: Annotated[int, Field(ge=0, alias="unhealthyGPUs")] = 0
    stale_agents: Count = 0
    products: Annotated[list[NameStr], Field(max_length=MAX_PRODUCTS)] = []


@model_serializer(mode="wrap")
def _omit_device_plugin_source(self: BaseModel, handler: SerializerFunctionWrapHandler) -> Any:
    """Per-node objects leave the common source, the device plugin, unwritten (readers default
    it): rows are the bulk of the status, and device-plugin nodes' objects stay as they were."""
    data = handler(self)
    if isinstance(data, dict) and data.get("source") == "DevicePlugin":
        del data["source"]
    return data


class NodeRow(WireModel):
    """One compact row per GPU node; the details live in the node's GPUNode."""

    name: NameStr
    product: NameStr = ""
    ready: bool = False
    allocatable: Count = 0
    allocated: Count = 0
    gpus: Count = 0
    unhealthy: Count = 0
    agent: AgentState = "Missing"
    source: Annotated[
        Source,
        Field(description="Who advertises the node's GPUs; written only when it is DRA."),
    ] = "DevicePlugin"

    _compact = _omit_device_plugin_source


class SkippedObjects(WireModel):
    """Objects left out of the totals because a GPU quantity on them cannot be read."""

    pods: Count = 0
    nodes: Count = 0


UTC_SECONDS: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
"""RFC 3339 in UTC to the second, as the API server writes its own timestamps."""


def _utc_seconds(value: datetime | None) -> datetime | None:
    """In UTC, to the second (naive means UTC): the only form the CRD admits."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


class GPUInventoryStatus(WireModel):
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    last_sync_time: Annotated[
        datetime | None,
        AfterValidator(_utc_seconds),
        Field(
            description=(
                "When the operator last confirmed this status reflects the cluster; refreshed at"
                " least every minute while it works. Readers treat an older status as not current."
                " Always UTC, whole seconds, `Z`: readers (Argo CD's health check) compare it as"
                " a string."
            ),
            json_schema_extra={"pattern": UTC_SECONDS},
        ),
    ] = None
    summary: InventorySummary = InventorySummary()
    # Atomic: one row per (name, source), so a name alone is no key; one writer owns them all.
    resources: Annotated[
        list[ResourceTotals],
        Field(
            max_length=MAX_RESOURCE_NAMES * 4,
            json_schema_extra={"x-kubernetes-list-type": "atomic"},
        ),
    ] = []
    products: Annotated[
        list[ProductTotals],
        Field(
            max_length=MAX_PRODUCTS,
            json_schema_extra=map_list("product"),
        ),
    ] = []
    # Atomic, not a map keyed by name: one writer (the operator) owns every row, and a map list
    # makes the API server track field ownership per row. At 1,000 nodes that doubled the
    # object (177 KB of managedFields) and tripled the cost of every status patch (measured
    # with bench/operator_scale.py: 200-370 ms -> 90-150 ms per write).
    nodes: Annotated[
        list[NodeRow],
        Field(max_length=MAX_NODES, json_schema_extra={"x-kubernetes-list-type": "atomic"}),
    ] = []
    nodes_omitted: Annotated[
        Count,
        Field(description="GPU nodes left out of `nodes` (see spec.maxNodeRows)."),
    ] = 0
    skipped: Annotated[
        SkippedObjects,
        Field(description="Objects left out because a GPU quantity on them is malformed."),
    ] = SkippedObjects()
    conditions: Conditions = []


# --- GPUNode: readings written by the agent ----------------------------------------------------


class AgentInfo(WireModel):
    version: ShortStr = ""
    pod_name: NameStr = ""
    heartbeat_time: datetime | None = None
    nvml_available: bool = False
    message: Annotated[
        MessageStr, Field(description="Why NVML is unavailable, or the last error.")
    ] = ""
    boot_id: Annotated[
        ShortStr,
        Field(
            description=(
                "The node's boot ID (Node status.nodeInfo.bootID) when this was written: a"
                " restarted agent restores the XIDs below only from the same boot."
            )
        ),
    ] = ""


class DriverInfo(WireModel):
    driver_version: ShortStr | None = None
    cuda_version: ShortStr | None = None
    nvml_version: ShortStr | None = None


class Clocks(WireModel):
    """Current clocks in MHz."""

    sm: Count | None = None
    memory: Count | None = None
    graphics: Count | None = None


class EccCounts(WireModel):
    """ECC mode and error counts. Volatile counts reset when the driver reloads."""

    enabled: bool | None = None
    volatile_corrected: Count | None = None
    volatile_uncorrected: Count | None = None
    aggregate_corrected: Count | None = None
    aggregate_uncorrected: Count | None = None


class RetiredPages(WireModel):
    """Dynamic page retirement, pre-Ampere GPUs."""

    single_bit_ecc: Count = 0
    double_bit_ecc: Count = 0
    pending: bool = False


class RemappedRows(WireModel):
    """Row remapping, Ampere and later. `pending` means a GPU reset is needed."""

    correctable: Count = 0
    uncorrectable: Count = 0
    pending: bool = False
    failure: bool = False


class MigInstance(WireModel):
    uuid: ShortStr
    gpu_instance_id: Count | None = None
    compute_instance_id: Count | None = None
    profile: ShortStr = ""
    memory_total: Count | None = None


class Mig(WireModel):
    enabled: bool = False
    pending_enabled: bool | None = None
    instances: Annotated[list[MigInstance], Field(max_length=MAX_MIG_INSTANCES)] = []


class NVLink(WireModel):
    """NVLink link states: how many links exist and which are down."""

    links: Annotated[int, Field(ge=0, le=MAX_NVLINKS)] = 0
    active: Annotated[int, Field(ge=0, le=MAX_NVLINKS)] = 0
    inactive_links: Annotated[
        list[Annotated[int, Field(ge=0, le=MAX_NVLINKS)]], Field(max_length=MAX_NVLINKS)
    ] = []


# One entry per XID code, never one per event: a burst of one code cannot push another out of
# the bounded list (the agent's nodeagent/memory.py keeps them).
class XidEvent(WireModel):
    """One XID code seen on a GPU: how often, when, and what NVIDIA's XID catalog says."""

    xid: Annotated[int, Field(ge=0, le=65_535)]
    time: Annotated[datetime, Field(description="When NVML last reported this XID on this GPU.")]
    first_time: Annotated[
        datetime | None, Field(description="When this XID was first seen (within the window).")
    ] = None
    count: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_XID_COUNT,
            description="How often it was seen between firstTime and time (saturates).",
        ),
    ] = 1
    class_: Annotated[XidClass, Field(alias="class")] = "Unknown"
    action: XidAction = "Investigate"
    resolution: Annotated[
        ShortStr,
        Field(
            description=(
                "The immediate resolution bucket of NVIDIA's XID catalog (RESET_GPU, RESTART_APP,"
                " ...); empty when the catalog has none or does not know the code."
            )
        ),
    ] = ""
    mnemonic: Annotated[ShortStr, Field(description="The catalog's name for the code.")] = ""


class Health(WireModel):
    status: HealthStatus = "Unknown"
    reasons: Annotated[list[ReasonStr], Field(max_length=MAX_REASONS)] = []


class GPU(WireModel):
    """One physical GPU. A field NVML does not support is null and named in `unsupported`."""

    uuid: ShortStr
    index: Annotated[int, Field(ge=0, le=1023)]
    name: Annotated[str, StringConstraints(max_length=128)] = ""
    pci_bus_id: Annotated[str, StringConstraints(max_length=32)] = ""
    memory_total: Count | None = None
    memory_used: Count | None = None
    utilization_gpu: Percent | None = None
    utilization_memory: Percent | None = None
    temperature: Annotated[int, Field(ge=-100, le=300)] | None = None
    slowdown_temperature: Annotated[int, Field(ge=0, le=300)] | None = None
    shutdown_temperature: Annotated[int, Field(ge=0, le=300)] | None = None
    power_draw_watts: Annotated[float, Field(ge=0, le=100_000)] | None = None
    power_limit_watts: Annotated[float, Field(ge=0, le=100_000)] | None = None
    clocks: Clocks = Clocks()
    clocks_event_reasons: Annotated[list[ShortStr], Field(max_length=16)] = []
    ecc: EccCounts = EccCounts()
    retired_pages: RetiredPages | None = None
    remapped_rows: RemappedRows | None = None
    unrepairable_memory: Annotated[
        bool | None,
        Field(
            description=(
                "NVML's unrepairable-memory flag (nvmlDeviceGetUnrepairableMemoryFlag_v1); null"
                " where the driver or GPU has none."
            )
        ),
    ] = None
    recovery_action: RecoveryAction | None = None
    mig: Mig = Mig()
    nvlink: NVLink | None = None
    persistence_mode: bool | None = None
    xids: Annotated[list[XidEvent], Field(max_length=MAX_XIDS)] = []
    health: Health = Health()
    unsupported: Annotated[
        list[Annotated[str, StringConstraints(max_length=48)]], Field(max_length=48)
    ] = []


# --- GPUNode: the Kubernetes view written by the operator --------------------------------------


class NodeResource(WireModel):
    name: NameStr
    capacity: Count = 0
    allocatable: Count = 0
    allocated: Count = 0


class KubernetesView(WireModel):
    """The operator's view of the node: what the scheduler sees, and the agent's freshness."""

    labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS)] = {}
    conditions: Annotated[dict[ShortStr, bool], Field(max_length=MAX_NODE_CONDITIONS)] = {}
    gpu_resources: Annotated[
        list[NodeResource],
        Field(
            max_length=MAX_RESOURCE_NAMES,
            json_schema_extra=map_list("name"),
        ),
    ] = []
    allocated: Annotated[Count, Field(description="Allocated units of the primary resource.")] = 0
    agent_state: AgentState = "Missing"
    source: Annotated[
        Source,
        Field(description="Who advertises the node's GPUs; written only when it is DRA."),
    ] = "DevicePlugin"

    _compact = _omit_device_plugin_source


class GPUNodeSummary(WireModel):
    """Written by the agent with its readings, for `kubectl get gpunodes`."""

    gpus: Count = 0
    product: NameStr = ""
    health: HealthStatus = "Unknown"
    unhealthy: Count = 0


# The agent's summary must agree with the list it summarises (design.md, GPUNode): a broken or
# hostile agent cannot claim 100,000 GPUs, or no unhealthy ones, next to the GPUs it lists.
# Absent fields count as 0: status has no defaults (api/crdgen.py), and the operator's own
# writes (status.kubernetes only) carry neither.
_SUMMARY_GPUS = "(has(self.summary) && has(self.summary.gpus) ? self.summary.gpus : 0)"
_SUMMARY_UNHEALTHY = (
    "(has(self.summary) && has(self.summary.unhealthy) ? self.summary.unhealthy : 0)"
)
_LISTED_GPUS = "(has(self.gpus) ? size(self.gpus) : 0)"
_LISTED_UNHEALTHY = (
    "(has(self.gpus) ? self.gpus.filter(g, has(g.health) && has(g.health.status)"
    " && g.health.status == 'Unhealthy').size() : 0)"
)
SUMMARY_RULES: list[dict[str, str]] = [
    {
        "rule": f"{_SUMMARY_GPUS} == {_LISTED_GPUS}",
        "message": "summary.gpus must equal the number of GPUs listed in gpus",
        "fieldPath": ".summary.gpus",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": f"{_SUMMARY_UNHEALTHY} == {_LISTED_UNHEALTHY}",
        "message": (
            "summary.unhealthy must equal the number of listed GPUs whose health.status is"
            " Unhealthy"
        ),
        "fieldPath": ".summary.unhealthy",
        "reason": "FieldValueInvalid",
    },
]


class GPUNodeStatus(WireModel):
    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": cast("list[JsonValue]", SUMMARY_RULES)}
    )

    summary: GPUNodeSummary | None = None
    agent: AgentInfo | None = None
    driver: DriverInfo | None = None
    gpus: Annotated[
        list[GPU],
        Field(
            max_length=MAX_GPUS_PER_NODE,
            json_schema_extra=map_list("uuid"),
        ),
    ] = []
    kubernetes: KubernetesView | None = None


# --- Objects -----------------------------------------------------------------------------------


class ObjectMeta(WireModel):
    """The parts of metadata the components read."""

    name: str
    generation: int | None = None
    resource_version: str | None = None
    uid: str | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] = {}


class GPUInventory(WireModel):
    api_version: Literal["gpuinventory.io/v1alpha1"] = constants.API_VERSION
    kind: Literal["GPUInventory"] = constants.INVENTORY_KIND
    metadata: ObjectMeta
    spec: GPUInventorySpec = GPUInventorySpec()
    status: GPUInventoryStatus | None = None


class GPUNode(WireModel):
    api_version: Literal["gpuinventory.io/v1alpha1"] = constants.API_VERSION
    kind: Literal["GPUNode"] = constants.NODE_KIND
    metadata: ObjectMeta
    status: GPUNodeStatus | None = None
