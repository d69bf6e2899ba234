"""Sample GPUNode and GPUInventory models, for tests and benchmarks of the MCP server.

Pure: no I/O. `inventory(nodes)` totals the nodes the simple way (every GPU node counted, pods
already folded into `allocated`), so a test can state its cluster in a few lines and get
objects shaped like the ones the operator and the agents write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

from gpu_inventory.api import constants
from gpu_inventory.api.models import (
    GPU,
    AgentInfo,
    AgentState,
    Condition,
    DriverInfo,
    GPUInventory,
    GPUInventorySpec,
    GPUInventoryStatus,
    GPUNode,
    GPUNodeStatus,
    GPUNodeSummary,
    Health,
    HealthStatus,
    InventorySummary,
    KubernetesView,
    NodeResource,
    NodeRow,
    ObjectMeta,
    ProductTotals,
    RecoveryAction,
    RemappedRows,
    ResourceTotals,
    Source,
    XidEvent,
)
from gpu_inventory.mcpserver.snapshot import Snapshot

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
T4_MEMORY = 16_106_127_360


def gpu(
    index: int,
    *,
    node: str = "node",
    name: str = "Tesla T4",
    health: HealthStatus = "Healthy",
    reasons: Sequence[str] = (),
    memory_total: int = T4_MEMORY,
    memory_used: int = 0,
    temperature: int = 30,
    utilization: int = 0,
    xids: Sequence[XidEvent] = (),
    recovery_action: RecoveryAction | None = None,
    remapped_rows: RemappedRows | None = None,
    uuid: str | None = None,
) -> GPU:
    return GPU(
        uuid=uuid or f"GPU-{node}-{index:02d}",
        index=index,
        name=name,
        pci_bus_id=f"00000000:{index + 1:02X}:00.0",
        memory_total=memory_total,
        memory_used=memory_used,
        utilization_gpu=utilization,
        utilization_memory=0,
        temperature=temperature,
        power_draw_watts=30.0,
        power_limit_watts=70.0,
        recovery_action=recovery_action,
        remapped_rows=remapped_rows,
        xids=list(xids),
        health=Health(status=health, reasons=list(reasons)),
    )


def gpunode(
    name: str,
    *,
    gpus: Sequence[GPU] | int = 0,
    product: str = "Tesla-T4",
    gpu_name: str | None = None,
    ready: bool = True,
    conditions: dict[str, bool] | None = None,
    allocatable: int | None = None,
    allocated: int = 0,
    extra_resources: Sequence[NodeResource] = (),
    labels: dict[str, str] | None = None,
    agent: bool = True,
    agent_state: AgentState = "Reporting",
    pod_name: str | None = None,
    heartbeat: datetime = EPOCH,
    created: datetime = EPOCH - timedelta(days=1),
    source: Source = "DevicePlugin",
) -> GPUNode:
    """A GPUNode as agent and operator write it; `gpus` may be a count of healthy GPUs named
    `gpu_name` (default: the product label with spaces for dashes, as NVML names a T4).
    `conditions` are the Node's conditions besides Ready (default: three built-in ones)."""
    devices = (
        [gpu(i, node=name, name=gpu_name or product.replace("-", " ")) for i in range(gpus)]
        if isinstance(gpus, int)
        else list(gpus)
    )
    count = len(devices)
    allocatable = count if allocatable is None else allocatable
    unhealthy = sum(d.health.status == "Unhealthy" for d in devices)
    node_labels = {constants.PRODUCT_LABEL: product, constants.GPU_COUNT_LABEL: str(count)}
    node_labels.update(labels or {})
    return GPUNode(
        metadata=ObjectMeta(name=name, creation_timestamp=created),
        status=GPUNodeStatus(
            summary=GPUNodeSummary(
                gpus=count,
                product=product,
                health="Unhealthy" if unhealthy else "Healthy",
                unhealthy=unhealthy,
            )
            if agent
            else None,
            agent=AgentInfo(
                version="0.1.0",
                pod_name=pod_name or f"gpu-inventory-agent-{name}",
                heartbeat_time=heartbeat,
                nvml_available=True,
            )
            if agent
            else None,
            driver=DriverInfo(driver_version="580.65.06", cuda_version="13.0") if agent else None,
            gpus=devices if agent else [],
            kubernetes=KubernetesView(
                labels=node_labels,
                conditions={
                    "Ready": ready,
                    **(
                        conditions
                        if conditions is not None
                        else {"MemoryPressure": False, "DiskPressure": False}
                    ),
                },
                gpu_resources=[
                    NodeResource(
                        name=constants.PRIMARY_RESOURCE,
                        capacity=allocatable,
                        allocatable=allocatable,
                        allocated=allocated,
                    ),
                    *extra_resources,
                ],
                allocated=allocated,
                agent_state=agent_state if agent else "Missing",
                source=source,
            ),
        ),
    )


def inventory(
    nodes: Sequence[GPUNode],
    *,
    spec: GPUInventorySpec | None = None,
    ready: bool = True,
    now: datetime = EPOCH,
    last_sync: datetime | Literal["now"] | None = "now",
) -> GPUInventory:
    """The `cluster` GPUInventory whose status totals `nodes`, confirmed by the operator at
    `last_sync` ("now": at `now`; None: never, as an operator older than lastSyncTime wrote it)."""
    rows: list[NodeRow] = []
    products: dict[str, ProductTotals] = {}
    resources: dict[tuple[str, str], ResourceTotals] = {}
    for node in nodes:
        status = node.status or GPUNodeStatus()
        view = status.kubernetes or KubernetesView()
        primary = next(
            (r for r in view.gpu_resources if r.name == constants.PRIMARY_RESOURCE), None
        )
        product = view.labels.get(constants.PRODUCT_LABEL, "")
        gpus = len(status.gpus)
        unhealthy = sum(g.health.status == "Unhealthy" for g in status.gpus)
        rows.append(
            NodeRow(
                name=node.metadata.name,
                product=product,
                ready=view.conditions.get("Ready", False),
                allocatable=primary.allocatable if primary else 0,
                allocated=primary.allocated if primary else 0,
                gpus=gpus,
                unhealthy=unhealthy,
                agent=view.agent_state,
                source=view.source,
            )
        )
        totals = products.setdefault(product, ProductTotals(product=product))
        products[product] = totals.model_copy(
            update={
                "nodes": totals.nodes + 1,
                "gpus": totals.gpus + gpus,
                "allocatable": totals.allocatable + rows[-1].allocatable,
                "allocated": totals.allocated + rows[-1].allocated,
                "available": totals.available + max(rows[-1].allocatable - rows[-1].allocated, 0),
            }
        )
        for r in view.gpu_resources:
            key = (r.name, view.source)
            t = resources.setdefault(key, ResourceTotals(name=r.name, source=view.source))
            resources[key] = t.model_copy(
                update={
                    "capacity": t.capacity + r.capacity,
                    "allocatable": t.allocatable + r.allocatable,
                    "allocated": t.allocated + r.allocated,
                    "available": t.available + max(r.allocatable - r.allocated, 0),
                }
            )
    allocatable = sum(r.allocatable for r in rows)
    allocated = sum(r.allocated for r in rows)
    capacity = sum(
        t.capacity for (name, _), t in resources.items() if name == constants.PRIMARY_RESOURCE
    )
    synced = now if last_sync == "now" else last_sync  # the model keeps whole UTC seconds
    return GPUInventory(
        metadata=ObjectMeta(name=constants.INVENTORY_NAME, generation=1),
        spec=spec or GPUInventorySpec(),
        status=GPUInventoryStatus(
            observed_generation=1,
            last_sync_time=synced,
            summary=InventorySummary(
                nodes=len(rows),
                ready_nodes=sum(r.ready for r in rows),
                gpus=sum(r.gpus for r in rows),
                capacity=capacity,
                allocatable=allocatable,
                allocated=allocated,
                available=sum(max(r.allocatable - r.allocated, 0) for r in rows),
                unhealthy_gpus=sum(r.unhealthy for r in rows),
                stale_agents=sum(r.agent == "Stale" for r in rows),
                products=sorted(p for p in products if p),
            ),
            resources=[resources[key] for key in sorted(resources)],
            products=sorted((p for p in products.values() if p.product), key=lambda p: p.product),
            nodes=rows,
            conditions=[
                Condition(
                    type=constants.ConditionType.READY,
                    status="True" if ready else "False",
                    last_transition_time=now,
                    reason=constants.Reason.INVENTORY_CURRENT
                    if ready
                    else constants.Reason.INDEXING,
                    message="" if ready else "indexing nodes and pods",
                    observed_generation=1,
                )
            ],
        ),
    )


NPD_CONDITIONS: dict[str, bool] = {
    # kubelet's own
    "MemoryPressure": False,
    "DiskPressure": False,
    "PIDPressure": False,
    "NetworkUnavailable": False,
    # Node Problem Detector's default monitors (config/kernel-monitor.json,
    # systemd-monitor.json, docker-monitor.json in kubernetes/node-problem-detector)
    "KernelDeadlock": False,
    "ReadonlyFilesystem": False,
    "FrequentKubeletRestart": False,
    "FrequentDockerRestart": False,
    "FrequentContainerdRestart": False,
    "CorruptDockerOverlay2": False,
    # a site's own NPD plugin for GPUs (names vary by site)
    "GPUXidError": False,
}
"""The 11 conditions a production GPU node carries besides Ready (12 in all)."""


def gfd_labels(product: str, *, gpus: int, memory_mib: int = 81_559) -> dict[str, str]:
    """The 40 labels GPU Feature Discovery (NVIDIA/k8s-device-plugin docs/gfd_labels.md), the
    GPU Operator (`nvidia.com/gpu.deploy.*`, upgrade state), Node Feature Discovery and the
    cloud put on a GPU node, every one of which the operator keeps (its label prefixes)."""
    gfd = {
        "cuda.driver.major": "580",
        "cuda.driver.minor": "65",
        "cuda.driver.rev": "06",
        "cuda.driver-version.full": "580.65.06",
        "cuda.driver-version.major": "580",
        "cuda.driver-version.minor": "65",
        "cuda.driver-version.revision": "06",
        "cuda.runtime.major": "13",
        "cuda.runtime.minor": "0",
        "cuda.runtime-version.full": "13.0",
        "cuda.runtime-version.major": "13",
        "cuda.runtime-version.minor": "0",
        "gfd.timestamp": "1764300000",
        "gpu.compute.major": "9",
        "gpu.compute.minor": "0",
        "gpu.count": str(gpus),
        "gpu.family": "hopper",
        "gpu.machine": "p5.48xlarge",
        "gpu.memory": str(memory_mib),
        "gpu.mode": "compute",
        "gpu.product": product,
        "gpu.replicas": "1",
        "gpu.sharing-strategy": "none",
        "gpu.present": "true",
        "mig.capable": "true",
        "mig.strategy": "single",
        "mps.capable": "false",
        "vgpu.present": "false",
        "gpu.deploy.container-toolkit": "true",
        "gpu.deploy.dcgm": "true",
        "gpu.deploy.dcgm-exporter": "true",
        "gpu.deploy.device-plugin": "true",
        "gpu.deploy.driver": "true",
        "gpu.deploy.gpu-feature-discovery": "true",
        "gpu.deploy.node-status-exporter": "true",
        "gpu.deploy.operator-validator": "true",
        "gpu-driver-upgrade-state": "upgrade-done",
    }
    return {
        **{f"nvidia.com/{key}": value for key, value in gfd.items()},
        "node.kubernetes.io/instance-type": "p5.48xlarge",
        "topology.kubernetes.io/zone": "us-east-1a",
        "feature.node.kubernetes.io/pci-10de.present": "true",
    }


def production_node(
    name: str, *, gpus: Sequence[GPU] | int = 8, allocated: int = 0, **options: Any
) -> GPUNode:
    """An 8 x H100 node shaped like a production one: GFD and GPU Operator labels, and
    Node Problem Detector's conditions (about 3 KB of compact JSON before its GPUs)."""
    product = "NVIDIA-H100-80GB-HBM3"
    return gpunode(
        name,
        gpus=gpus,
        product=product,
        gpu_name="NVIDIA H100 80GB HBM3",
        labels=gfd_labels(product, gpus=gpus if isinstance(gpus, int) else len(gpus)),
        conditions=NPD_CONDITIONS,
        allocated=allocated,
        **options,
    )


def snapshot(nodes: Sequence[GPUNode], **inventory_args: Any) -> Snapshot:
    """What the MCP server's cache holds once it has listed `nodes` and their inventory."""
    return Snapshot(
        inventory=inventory(nodes, **inventory_args),
        nodes=MappingProxyType({n.metadata.name: n for n in nodes}),
        synced=True,
        connected=True,
    )


def xid(
    number: int, *, minute: int, action: str = "ResetGPU", xid_class: str = "Memory"
) -> XidEvent:
    """An XID event `minute` minutes after EPOCH."""
    return XidEvent.model_validate(
        {
            "xid": number,
            "time": EPOCH.replace(minute=minute),
            "class": xid_class,
            "action": action,
        }
    )
