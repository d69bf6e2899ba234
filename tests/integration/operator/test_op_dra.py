"""GPUs that DRA hands out, counted by the operator against a real API server (v1.34, which serves
resource.k8s.io/v1), beside device-plugin GPUs in one inventory.

No scheduler and no kubelet run here: ResourceSlices are created the way NVIDIA's DRA driver
publishes them, and each claim's `status.allocation` (and a DRAExtendedResource pod's
`status.extendedResourceClaimStatus`) is written the way kube-scheduler writes them. The API
server validates every one of those objects. Alpha gates this needs: DRAExtendedResource
(DeviceClass.extendedResourceName, the pod status field), DRADeviceTaints (device taints) and
DRAPartitionableDevices (sharedCounters, consumesCounters: NVIDIA's dynamic MIG);
DRAAdminAccess and DRAPrioritizedList are beta and on in 1.34.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.testing import controlplane, dra
from gpu_inventory.testing.builders import make_node, make_pod
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.wait import eventually

pytestmark = pytest.mark.cluster

GPU = "nvidia.com/gpu"
MIG = "nvidia.com/mig-1g.10gb"
GATES = "--feature-gates=DRAExtendedResource=true,DRADeviceTaints=true,DRAPartitionableDevices=true"
FATAL_XID = {"key": "gpu.nvidia.com/xid", "value": "79", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """Overrides the session's control plane for this module: DRA's alpha gates on."""
    with controlplane.with_crds(tmp_path_factory.mktemp("dra"), apiserver_args=(GATES,)) as plane:
        yield plane


class Dra:
    """resource.k8s.io/v1 for one test; removes the cluster-scoped objects it made."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = client.ResourceV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def classes(self) -> None:
        for body in dra.gpu_classes():
            self.api.create_device_class(body)

    def publish(self, body: dict[str, Any]) -> None:
        """Create or replace a ResourceSlice, as the driver's slice controller does."""
        name = body["metadata"]["name"]
        try:
            current = self.api.read_resource_slice(name)
        except client.ApiException as error:
            if error.status != 404:
                raise
            self.api.create_resource_slice(body)
            return
        body = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": current.metadata.resource_version},
        }
        self.api.replace_resource_slice(name, body)

    def claim(self, body: dict[str, Any], status: dict[str, Any]) -> str:
        """Create a claim and write its status as the scheduler does; its name."""
        created = self.api.create_namespaced_resource_claim(self.namespace, body)
        name = str(created.metadata.name)
        self.api.patch_namespaced_resource_claim_status(name, self.namespace, {"status": status})
        return name

    def pod(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a pod; its name and uid, for `reservedFor` and owner references."""
        created = self.core.create_namespaced_pod(self.namespace, body)
        return {"metadata": {"name": created.metadata.name, "uid": created.metadata.uid}}

    def cleanup(self) -> None:
        for item in self.api.list_resource_slice().items:
            with contextlib.suppress(client.ApiException):
                self.api.delete_resource_slice(item.metadata.name)
        for item in self.api.list_device_class().items:
            with contextlib.suppress(client.ApiException):
                self.api.delete_device_class(item.metadata.name)


@pytest.fixture
def resources_api(k8s: client.ApiClient, namespace: str) -> Iterator[Dra]:
    # Claims with adminAccess are admitted only in namespaces labelled for it (DRAAdminAccess).
    client.CoreV1Api(k8s).patch_namespace(
        namespace, {"metadata": {"labels": {"resource.kubernetes.io/admin-access": "true"}}}
    )
    api = Dra(k8s, namespace)
    try:
        yield api
    finally:
        api.cleanup()


def resources(status: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    return {
        (r["name"], r["source"]): (r["capacity"], r["allocatable"], r["allocated"], r["available"])
        for r in status["resources"]
    }


def rows(status: dict[str, Any]) -> dict[str, tuple[str, int, int, int, int]]:
    return {
        r["name"]: (
            r.get("source", "DevicePlugin"),
            r["gpus"],
            r["allocatable"],
            r["allocated"],
            r["unhealthy"],
        )
        for r in status["nodes"]
    }


def claimed_pod(name: str, namespace: str, claim: str, node: str) -> dict[str, Any]:
    """A pod that uses ResourceClaim `claim` (as `spec.resourceClaims`), bound to `node`."""
    pod = make_pod(name, namespace=namespace, node=node)
    pod["spec"]["resourceClaims"] = [{"name": "gpus", "resourceClaimName": claim}]
    pod["spec"]["containers"][0]["resources"] = {"claims": [{"name": "gpus"}]}
    return pod


def test_dra_and_device_plugin_gpus_in_one_inventory(
    operator: Any, kube: Any, resources_api: Dra, namespace: str
) -> None:
    ns = namespace
    r = resources_api
    r.classes()
    kube.create_node(make_node("dp-t4", gpus=4))
    kube.create_pod(make_pod("dp-job", namespace=ns, node="dp-t4", gpus=1))
    # A DRA node with four full A100s, and one with static MIG devices on two GPUs.
    kube.create_node(make_node("dra-a100"))
    kube.create_node(make_node("dra-mig"))
    r.publish(dra.make_slice("dra-a100", [dra.gpu_device("dra-a100", i) for i in range(4)]))
    r.publish(
        dra.make_slice(
            "dra-mig", [dra.mig_device("dra-mig", g, p) for g in range(2) for p in range(3)]
        )
    )
    # Two pods share one claim of two GPUs: the devices are held once.
    shared = dra.make_claim("shared", ns, 2)
    first = r.pod(claimed_pod("trainer-0", ns, "shared", "dra-a100"))
    second = r.pod(claimed_pod("trainer-1", ns, "shared", "dra-a100"))
    r.claim(
        shared,
        {
            "allocation": dra.allocation("dra-a100", ["gpu-0", "gpu-1"]),
            "reservedFor": dra.reserved_for(first, second),
        },
    )
    # A monitoring claim with admin access sees gpu-0 without holding it.
    r.claim(
        dra.make_claim("monitor", ns, 1, admin_access=True),
        {"allocation": dra.allocation("dra-a100", ["gpu-0"], admin_access=True)},
    )
    # A prioritized list that got its second choice: one MIG device.
    r.claim(
        dra.make_claim(
            "inference", ns, 1, device_class="mig.nvidia.com", subrequests=["a100", "mig"]
        ),
        {"allocation": dra.allocation("dra-mig", ["gpu-1-mig-1g10gb-19-2"], request="gpus/mig")},
    )
    # A pod asking for nvidia.com/gpu on the DRA node, served through DRAExtendedResource: the
    # scheduler's claim (owned by the pod) holds gpu-3, and the pod's status maps its request.
    served = r.pod(make_pod("served", namespace=ns, node="dra-a100", gpus=1))
    claim_name = r.claim(
        {
            "apiVersion": dra.API_VERSION,
            "kind": "ResourceClaim",
            "metadata": {
                "generateName": "served-extended-resources-",
                "annotations": {dra.EXTENDED_RESOURCE_CLAIM: "true"},
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "name": "served",
                        "uid": served["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "devices": {
                    "requests": [
                        {
                            "name": "container-0-request-0",
                            "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 1},
                        }
                    ]
                }
            },
        },
        {
            "allocation": dra.allocation("dra-a100", ["gpu-3"], request="container-0-request-0"),
            "reservedFor": dra.reserved_for(served),
        },
    )
    client.CoreV1Api(kube.api).patch_namespaced_pod_status(
        "served",
        ns,
        {
            "status": {
                "extendedResourceClaimStatus": dra.extended_resource_claim_status(
                    claim_name, [("main", GPU, "container-0-request-0")]
                )
            }
        },
    )

    def counted(status: dict[str, Any]) -> None:
        assert resources(status) == {
            (GPU, "DevicePlugin"): (4, 4, 1, 3),
            (GPU, "DRA"): (4, 4, 3, 1),
            (MIG, "DRA"): (6, 6, 1, 5),
        }
        assert rows(status) == {
            "dp-t4": ("DevicePlugin", 4, 4, 1, 0),
            "dra-a100": ("DRA", 4, 4, 3, 0),
            "dra-mig": ("DRA", 2, 0, 0, 0),
        }
        summary = status["summary"]
        assert (summary["nodes"], summary["gpus"]) == (3, 10)
        assert (summary["allocatable"], summary["allocated"], summary["available"]) == (8, 4, 4)
        assert summary["products"] == [dra.A100_LABEL, "Tesla-T4"]

    kube.wait_for(counted, timeout=30, what="DRA and device-plugin GPUs counted")
    view = eventually(lambda: kube.view("dra-a100", allocated=3), what="the DRA node's GPUNode")
    assert view["source"] == "DRA"
    assert view["gpuResources"] == [{"name": GPU, "capacity": 4, "allocatable": 4, "allocated": 3}]
    assert "source" not in eventually(lambda: kube.view("dp-t4", allocated=1), what="dp-t4 view")
    assert "Dynamic Resource Allocation (resource.k8s.io/v1) is served" in operator.log()


def test_pools_taints_and_deallocation_move_the_counts(
    operator: Any, kube: Any, resources_api: Dra, namespace: str
) -> None:
    r = resources_api
    r.classes()
    kube.create_node(make_node("dra-a"))
    r.publish(dra.make_slice("dra-a", [dra.gpu_device("dra-a", i) for i in range(2)]))
    claim = r.claim(
        dra.make_claim("job", namespace, 1), {"allocation": dra.allocation("dra-a", ["gpu-1"])}
    )

    def gpu(want: tuple[int, int, int, int]) -> Any:
        def check(status: dict[str, Any]) -> None:
            assert resources(status).get((GPU, "DRA")) == want

        return check

    kube.wait_for(gpu((2, 2, 1, 1)), timeout=30, what="two DRA GPUs, one held")
    # The driver republishes the pool with a new generation: a third GPU, and an XID 79 taint.
    republished = dra.make_slice(
        "dra-a",
        [
            dra.gpu_device("dra-a", 0, taints=[FATAL_XID]),
            *(dra.gpu_device("dra-a", i) for i in (1, 2)),
        ],
        generation=2,
    )
    r.publish(republished)
    status = kube.wait_for(gpu((3, 2, 1, 1)), what="the newest generation, one GPU tainted")
    assert status["summary"]["unhealthyGPUs"] == 1
    assert kube.condition(status, "Degraded")[0] == "True"
    # Split into two slices of generation 3, the second not published yet: incomplete. The
    # scheduler keeps allocating from such a pool, so generation 2 is counted meanwhile.
    r.publish(dra.make_slice("dra-a", [dra.gpu_device("dra-a", 0)], generation=3, slice_count=2))

    def logged() -> None:
        assert "pool gpu.nvidia.com/dra-a: incomplete: 1 of 2 slices at generation 3" in (
            operator.log()
        )

    eventually(logged, what="the incomplete pool logged")
    kube.wait_for(gpu((3, 2, 1, 1)), what="generation 2 still counted")
    r.publish(
        dra.make_slice(
            "dra-a",
            [dra.gpu_device("dra-a", 1), dra.gpu_device("dra-a", 2)],
            name="dra-a-gpu.nvidia.com-2",
            generation=3,
            slice_count=2,
        )
    )
    kube.wait_for(gpu((3, 3, 1, 2)), what="the complete pool of generation 3")
    # The claim is deallocated (its last consumer gone), then deleted.
    r.api.patch_namespaced_resource_claim_status(claim, namespace, {"status": {"allocation": None}})
    kube.wait_for(gpu((3, 3, 0, 3)), what="the device freed")


def test_a_node_with_device_plugin_and_dra_gpus_keeps_both_sources_apart(
    operator: Any, kube: Any, resources_api: Dra, namespace: str
) -> None:
    """The 1.34 scheduler serves an extended resource through DRA only where the node's
    allocatable has none of it (pkg/scheduler/framework/plugins/dynamicresources), but a pod's
    own ResourceClaim takes DRA devices on any node: one node can carry both kinds. `mix` has 4
    device-plugin GPUs and 2 DRA GPUs of the 6 GFD counts; `twice` offers its 2 GPUs both ways."""
    r = resources_api
    r.classes()
    kube.create_node(make_node("mix", gpus=4, labels={"nvidia.com/gpu.count": "6"}))
    kube.create_node(make_node("twice", gpus=2))
    kube.create_pod(make_pod("dp-job", namespace=namespace, node="mix", gpus=1))
    r.publish(dra.make_slice("mix", [dra.gpu_device("mix", i) for i in range(2)]))
    r.publish(dra.make_slice("twice", [dra.gpu_device("twice", i) for i in range(2)]))
    r.claim(dra.make_claim("job", namespace, 1), {"allocation": dra.allocation("mix", ["gpu-0"])})

    def counted(status: dict[str, Any]) -> None:
        assert resources(status) == {
            (GPU, "DevicePlugin"): (6, 6, 1, 5),
            (GPU, "DRA"): (4, 4, 1, 3),
        }
        assert rows(status) == {
            "mix": ("DRA", 6, 6, 2, 0),
            "twice": ("DRA", 2, 4, 0, 0),  # capped at GFD's count
        }

    status = kube.wait_for(counted, timeout=30, what="each source in its own row")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    assert "advertised by both the device plugin and DRA on twice" in degraded["message"]
    assert "mix" not in degraded["message"].split("advertised by both")[1]


def test_dynamic_mig_counts_what_the_counter_sets_allow(
    operator: Any, kube: Any, resources_api: Dra, namespace: str
) -> None:
    """Two A100s with every MIG placement, as NVIDIA's driver publishes them with DynamicMIG on
    1.34 (one slice per GPU, with its counter set), and a 3g.40gb allocated on gpu-0."""
    r = resources_api
    r.classes()
    kube.create_node(make_node("dra-dyn"))
    for minor in (0, 1):
        r.publish(dra.dynamic_mig_slice("dra-dyn", minor, slice_count=2))
    stored = r.api.read_resource_slice("dra-dyn-gpu-0")
    assert stored.spec.shared_counters, "the API server dropped sharedCounters (gate off?)"
    placement = dra.placement_name(0, "3g.40gb", 9, 0)
    r.claim(
        dra.make_claim("slice", namespace, 1, device_class="mig.nvidia.com"),
        {"allocation": dra.allocation("dra-dyn", [placement])},
    )

    def counted(status: dict[str, Any]) -> None:
        got = resources(status)
        assert got[(GPU, "DRA")] == (2, 2, 1, 1)
        assert got[("nvidia.com/mig-7g.80gb", "DRA")] == (2, 2, 0, 1)
        assert got[(MIG, "DRA")] == (14, 14, 0, 10)
        assert got[("nvidia.com/mig-1g.10gb.me", "DRA")] == (14, 14, 0, 10)
        assert got[("nvidia.com/mig-3g.40gb", "DRA")] == (4, 4, 1, 3)
        assert rows(status)["dra-dyn"][:2] == ("DRA", 2)

    kube.wait_for(counted, timeout=30, what="dynamic MIG counted as its counters allow")
