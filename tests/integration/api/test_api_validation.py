"""The generated CRDs on a real API server: defaults, the singleton rule, validation, columns."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.api import constants, models
from gpu_inventory.api.objects import gpunode_object, inventory_object
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.kubectl import run_kubectl

pytestmark = pytest.mark.cluster

G, V = constants.GROUP, constants.VERSION
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def good_gpu(index: int = 0) -> dict[str, Any]:
    return models.GPU(
        uuid=f"GPU-{index:08d}-aaaa-bbbb-cccc-dddddddddddd",
        index=index,
        name="NVIDIA H100 80GB HBM3",
        pci_bus_id=f"00000000:{index:02X}:00.0",
        memory_total=85_899_345_920,
        memory_used=1_048_576,
        utilization_gpu=37,
        utilization_memory=12,
        temperature=41,
        slowdown_temperature=87,
        shutdown_temperature=92,
        power_draw_watts=120.5,
        power_limit_watts=700.0,
        clocks=models.Clocks(sm=1980, memory=2619, graphics=1980),
        clocks_event_reasons=["GpuIdle"],
        ecc=models.EccCounts(
            enabled=True,
            volatile_corrected=0,
            volatile_uncorrected=0,
            aggregate_corrected=3,
            aggregate_uncorrected=0,
        ),
        remapped_rows=models.RemappedRows(correctable=1),
        recovery_action="None",
        mig=models.Mig(
            enabled=True,
            instances=[
                models.MigInstance(
                    uuid="MIG-1",
                    gpu_instance_id=1,
                    compute_instance_id=0,
                    profile="1g.10gb",
                    memory_total=10_000_000_000,
                )
            ],
        ),
        nvlink=models.NVLink(links=18, active=17, inactive_links=[4]),
        persistence_mode=True,
        xids=[models.XidEvent(xid=79, time=NOW, class_="Hardware", action="RebootNode")],
        health=models.Health(status="Unhealthy", reasons=["XID 79: GPU has fallen off the bus"]),
        unsupported=["retiredPages"],
    ).to_wire()


def good_gpunode_status() -> dict[str, Any]:
    return models.GPUNodeStatus(
        summary=models.GPUNodeSummary(
            gpus=2, product="NVIDIA-H100-80GB-HBM3", health="Unhealthy", unhealthy=2
        ),
        agent=models.AgentInfo(
            version="0.1.0",
            pod_name="gpu-inventory-agent-abc12",
            heartbeat_time=NOW,
            nvml_available=True,
        ),
        driver=models.DriverInfo(
            driver_version="570.86.15", cuda_version="12.8", nvml_version="12.570.86.15"
        ),
        gpus=[models.GPU.model_validate(good_gpu(0)), models.GPU.model_validate(good_gpu(1))],
        kubernetes=models.KubernetesView(
            labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            conditions={"Ready": True, "MemoryPressure": False},
            gpu_resources=[
                models.NodeResource(name="nvidia.com/gpu", capacity=8, allocatable=8, allocated=2)
            ],
            allocated=2,
            agent_state="Reporting",
        ),
    ).to_wire()


def good_inventory_status() -> dict[str, Any]:
    return models.GPUInventoryStatus(
        observed_generation=1,
        last_sync_time=NOW,
        summary=models.InventorySummary(
            nodes=1,
            ready_nodes=1,
            gpus=8,
            capacity=8,
            allocatable=8,
            allocated=2,
            available=6,
            products=["Tesla-T4"],
        ),
        resources=[
            models.ResourceTotals(
                name="nvidia.com/gpu", capacity=8, allocatable=8, allocated=2, available=6
            )
        ],
        products=[
            models.ProductTotals(
                product="Tesla-T4", nodes=1, gpus=8, allocatable=8, allocated=2, available=6
            )
        ],
        nodes=[
            models.NodeRow(
                name="n1",
                product="Tesla-T4",
                ready=True,
                allocatable=8,
                allocated=2,
                gpus=8,
                agent="Reporting",
            )
        ],
        conditions=[
            models.Condition(
                type="Ready",
                status="True",
                reason="InventoryCurrent",
                last_transition_time=NOW,
                observed_generation=1,
            )
        ],
    ).to_wire()


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target: Any = obj
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if leaf.isdigit():
            target[int(leaf)] = value
        else:
            target[leaf] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target: Any = obj
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        del target[leaf]

    return mutate


BAD_SPECS = [
    pytest.param(_set("agentStaleAfterSeconds", "soon"), "agentStaleAfterSeconds", id="wrong-type"),
    pytest.param(
        _set("agentStaleAfterSeconds", -5), "agentStaleAfterSeconds", id="negative-threshold"
    ),
    pytest.param(
        _set("resourceNames", [f"r/{i}" for i in range(33)]), "resourceNames", id="too-many-names"
    ),
    pytest.param(_set("primaryResource", "x" * 300), "primaryResource", id="over-long-string"),
]

BAD_INVENTORY_STATUS = [
    pytest.param(_set("summary.allocated", -1), "allocated", id="negative-count"),
    pytest.param(_set("summary.gpus", "eight"), "gpus", id="count-wrong-type"),
    pytest.param(_set("nodes.0.agent", "Sleeping"), "agent", id="unknown-agent-state"),
    pytest.param(_drop("conditions.0.type"), "type", id="condition-without-type"),
    pytest.param(_set("conditions.0.reason", "not a reason!"), "reason", id="condition-bad-reason"),
    pytest.param(_set("conditions.0.status", "Maybe"), "status", id="condition-unknown-status"),
    pytest.param(
        _set("lastSyncTime", "2026-06-01T14:00:00+02:00"), "lastSyncTime", id="sync-time-not-utc"
    ),
    pytest.param(
        _set("lastSyncTime", "2026-06-01T12:00:00.5Z"), "lastSyncTime", id="sync-time-fractional"
    ),
]

BAD_GPUNODE_STATUS = [
    pytest.param(
        lambda s: s.__setitem__("gpus", [good_gpu(i) for i in range(33)]),
        "gpus",
        id="too-many-gpus",
    ),
    pytest.param(_set("gpus.0.name", "x" * 200), "name", id="over-long-gpu-name"),
    pytest.param(_set("gpus.0.health.status", "Sick"), "status", id="unknown-health"),
    pytest.param(_set("gpus.0.utilizationGpu", 150), "utilizationGpu", id="utilization-over-100"),
    pytest.param(_set("gpus.0.memoryTotal", -1), "memoryTotal", id="negative-memory"),
    pytest.param(_set("gpus.0.xids", [good_gpu()["xids"][0]] * 17), "xids", id="too-many-xids"),
    pytest.param(
        _set("gpus.0.recoveryAction", "PrayAndReboot"),
        "recoveryAction",
        id="unknown-recovery-action",
    ),
    pytest.param(_drop("gpus.0.uuid"), "uuid", id="gpu-without-uuid"),
    pytest.param(_set("gpus.1.uuid", good_gpu(0)["uuid"]), "Duplicate", id="duplicate-gpu-uuid"),
    pytest.param(
        _set("kubernetes.labels", {f"l{i}": "v" for i in range(65)}), "labels", id="too-many-labels"
    ),
    pytest.param(_set("agent.message", "m" * 2000), "message", id="over-long-agent-message"),
]


@pytest.fixture
def custom(cluster: ControlPlane, k8s: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s)


def _refused(call: Callable[[], object], field: str) -> str:
    with pytest.raises(client.ApiException) as refused:
        call()
    assert refused.value.status == 422, refused.value.body
    assert field in refused.value.body, refused.value.body
    return str(refused.value.body)


def test_an_empty_cluster_inventory_is_accepted_and_defaulted(
    custom: client.CustomObjectsApi,
) -> None:
    created = custom.create_cluster_custom_object(
        G,
        V,
        constants.INVENTORY_PLURAL,
        {
            "apiVersion": constants.API_VERSION,
            "kind": "GPUInventory",
            "metadata": {"name": "cluster"},
        },
    )
    assert created["spec"] == inventory_object()["spec"]


def test_any_other_inventory_name_is_refused_with_the_reason(
    custom: client.CustomObjectsApi,
) -> None:
    body = inventory_object()
    body["metadata"]["name"] = "my-inventory"
    message = _refused(
        lambda: custom.create_cluster_custom_object(G, V, constants.INVENTORY_PLURAL, body),
        "singleton",
    )
    assert "must be 'cluster'" in message


@pytest.mark.parametrize(("mutate", "field"), BAD_SPECS)
def test_bad_inventory_spec_is_refused(
    custom: client.CustomObjectsApi, mutate: Mutation, field: str
) -> None:
    body = inventory_object()
    mutate(body["spec"])
    _refused(
        lambda: custom.create_cluster_custom_object(G, V, constants.INVENTORY_PLURAL, body), field
    )


@pytest.mark.parametrize(("mutate", "field"), BAD_INVENTORY_STATUS)
def test_bad_inventory_status_is_refused(
    custom: client.CustomObjectsApi, mutate: Mutation, field: str
) -> None:
    custom.create_cluster_custom_object(G, V, constants.INVENTORY_PLURAL, inventory_object())
    status = good_inventory_status()
    mutate(status)
    _refused(
        lambda: custom.patch_cluster_custom_object_status(
            G, V, constants.INVENTORY_PLURAL, "cluster", {"status": status}
        ),
        field,
    )


@pytest.mark.parametrize(("mutate", "field"), BAD_GPUNODE_STATUS)
def test_bad_gpunode_status_is_refused(
    custom: client.CustomObjectsApi, mutate: Mutation, field: str
) -> None:
    custom.create_cluster_custom_object(G, V, constants.NODE_PLURAL, _unowned_gpunode("n1"))
    status = good_gpunode_status()
    mutate(status)
    _refused(
        lambda: custom.patch_cluster_custom_object_status(
            G, V, constants.NODE_PLURAL, "n1", {"status": status}
        ),
        field,
    )


def _unowned_gpunode(name: str) -> dict[str, Any]:
    body = gpunode_object(name, "0")
    del body["metadata"]["ownerReferences"]
    return body


def test_good_objects_of_every_shape_are_accepted_unchanged(
    custom: client.CustomObjectsApi,
) -> None:
    custom.create_cluster_custom_object(G, V, constants.INVENTORY_PLURAL, inventory_object())
    inventory = custom.patch_cluster_custom_object_status(
        G, V, constants.INVENTORY_PLURAL, "cluster", {"status": good_inventory_status()}
    )
    assert inventory["status"] == good_inventory_status()
    custom.create_cluster_custom_object(G, V, constants.NODE_PLURAL, _unowned_gpunode("n1"))
    gpunode = custom.patch_cluster_custom_object_status(
        G, V, constants.NODE_PLURAL, "n1", {"status": good_gpunode_status()}
    )
    assert gpunode["status"] == good_gpunode_status()


def test_kubectl_prints_the_printer_columns(
    cluster: ControlPlane, custom: client.CustomObjectsApi
) -> None:
    custom.create_cluster_custom_object(G, V, constants.INVENTORY_PLURAL, inventory_object())
    custom.patch_cluster_custom_object_status(
        G, V, constants.INVENTORY_PLURAL, "cluster", {"status": good_inventory_status()}
    )
    custom.create_cluster_custom_object(G, V, constants.NODE_PLURAL, _unowned_gpunode("n1"))
    custom.patch_cluster_custom_object_status(
        G, V, constants.NODE_PLURAL, "n1", {"status": good_gpunode_status()}
    )

    def kubectl(*args: str) -> list[list[str]]:
        result = run_kubectl(cluster.kubeconfig, *args)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        return [line.split() for line in out.strip().splitlines()]

    header, row = kubectl("get", "gpuinventory")
    assert header == [
        "NAME",
        "NODES",
        "GPUS",
        "ALLOCATABLE",
        "ALLOCATED",
        "AVAILABLE",
        "UNHEALTHY",
        "READY",
        "AGE",
    ]
    assert row[:8] == ["cluster", "1", "8", "8", "2", "6", "0", "True"]
    header, row = kubectl("get", "gpunodes")
    assert header == ["NAME", "GPUS", "PRODUCT", "ALLOCATED", "HEALTH", "AGENT", "AGE"]
    assert row[:6] == ["n1", "2", "NVIDIA-H100-80GB-HBM3", "2", "Unhealthy", "Reporting"]
    # The short names and the category work too.
    assert kubectl("get", "gpuinv", "-o", "name") == [["gpuinventory.gpuinventory.io/cluster"]]
    assert ["gpunode.gpuinventory.io/n1"] in kubectl("get", "gpu", "-o", "name")


def test_status_is_a_subresource(custom: client.CustomObjectsApi) -> None:
    body = copy.deepcopy(inventory_object())
    body["status"] = good_inventory_status()
    created = custom.create_cluster_custom_object(G, V, constants.INVENTORY_PLURAL, body)
    assert "status" not in created, "status must be written through /status only"
