"""Names shared by every component: API group, kinds, condition types and their reasons.

Pure: no I/O. Reasons are stable CamelCase strings; alerting routes on them, so never rename one.
"""

from typing import Final

GROUP: Final = "gpuinventory.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "gpuinventory.io/v1alpha1"

INVENTORY_KIND: Final = "GPUInventory"
INVENTORY_PLURAL: Final = "gpuinventories"
INVENTORY_NAME: Final = "cluster"
"""The one GPUInventory a cluster has; the CRD refuses any other name."""

NODE_KIND: Final = "GPUNode"
NODE_PLURAL: Final = "gpunodes"

CATEGORY: Final = "gpu"

PRIMARY_RESOURCE: Final = "nvidia.com/gpu"
DEFAULT_RESOURCE_NAMES: Final = ("nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-*")
DEFAULT_LABEL_PREFIXES: Final = (
    "nvidia.com/",
    "topology.kubernetes.io/",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "feature.node.kubernetes.io/pci-10de",
    "gpu-type",
    "accelerator",
)
DEFAULT_AGENT_STALE_AFTER_SECONDS: Final = 300
DEFAULT_MAX_NODE_ROWS: Final = 1000
"""About 130 KiB of rows: the GPUInventory stays far below etcd's 1.5 MiB request limit and
each status write stays cheap, at any cluster size."""

DEFAULT_DRA_DRIVERS: Final = ("gpu.nvidia.com",)
"""DRA drivers whose ResourceSlice devices are GPUs: NVIDIA's DRA driver for GPUs. Its other
driver, `compute-domain.nvidia.com`, publishes IMEX channels, not GPUs."""
MAX_DRA_DRIVERS: Final = 16

PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
GPU_COUNT_LABEL: Final = "nvidia.com/gpu.count"
MIG_STRATEGY_LABEL: Final = "nvidia.com/mig.strategy"
GPU_REPLICAS_LABEL: Final = "nvidia.com/gpu.replicas"
"""GFD's time-slicing / MPS replica factor: the device plugin advertises each GPU this often."""

NODE_CONDITION_TYPES: Final = (
    "Ready",
    "MemoryPressure",
    "DiskPressure",
    "PIDPressure",
    "NetworkUnavailable",
)

STATUS_REFRESH_SECONDS: Final = 60
"""The operator refreshes `status.lastSyncTime` at least this often while it works."""
STATUS_MAX_AGE_SECONDS: Final = 180
"""A GPUInventory status whose `lastSyncTime` is older than this is not current: its writer is
dead, stopped, cut off from the API server or refused (no writer can flip a condition it cannot
write, so every reader checks the age itself). Three missed refreshes."""

# Field managers: each writer owns its own fields (design: "one writer per field").
OPERATOR_FIELD_MANAGER: Final = "gpu-inventory-operator"
AGENT_FIELD_MANAGER: Final = "gpu-inventory-agent"


class ConditionType:
    """The four conditions Argo CD, Flux and kstatus read."""

    READY: Final = "Ready"
    DEGRADED: Final = "Degraded"
    RECONCILING: Final = "Reconciling"
    STALLED: Final = "Stalled"


class Reason:
    """Stable reasons for the GPUInventory conditions."""

    # Ready
    INVENTORY_CURRENT: Final = "InventoryCurrent"
    INDEXING: Final = "Indexing"
    RELISTING: Final = "Relisting"
    WRITE_FAILED: Final = "WriteFailed"
    # Degraded
    ALL_HEALTHY: Final = "AllHealthy"
    UNHEALTHY_GPUS: Final = "UnhealthyGPUs"
    NODES_NOT_READY: Final = "NodesNotReady"
    AGENTS_STALE: Final = "AgentsStale"
    MALFORMED_OBJECTS: Final = "MalformedObjects"
    GPUS_ADVERTISED_TWICE: Final = "GPUsAdvertisedTwice"
    DRA_NOT_COUNTED: Final = "DRANotCounted"
    MULTIPLE_PROBLEMS: Final = "MultipleProblems"
    # Reconciling (also Ready=False while the spec change is applied)
    RECONCILED: Final = "Reconciled"
    INITIAL_SYNC: Final = "InitialSync"
    SPEC_CHANGED: Final = "SpecChanged"
    # Stalled
    NOT_STALLED: Final = "NotStalled"
    FORBIDDEN: Final = "Forbidden"
    WRITE_REFUSED: Final = "WriteRefused"
    TOO_LARGE: Final = "TooLarge"
    INVALID_SPEC: Final = "InvalidSpec"
