"""DRA objects -> projections: NVIDIA-shaped ResourceSlices, claims as the scheduler allocates
them, DeviceClass selectors, and pods whose requests DRA serves."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gpu_inventory.operator.dra import projections
from gpu_inventory.operator.dra.projections import (
    UNAVAILABLE,
    UNHEALTHY,
    Device,
    MalformedError,
    Selector,
)
from gpu_inventory.testing import dra

DRIVERS = frozenset({dra.DRIVER})


def test_a_full_gpu_and_a_mig_device_keep_what_says_which_gpu_they_are() -> None:
    body = dra.make_slice("node-a", [dra.gpu_device("node-a", 0), dra.mig_device("node-a", 1, 3)])
    got = projections.project_slice(body, DRIVERS)
    assert got is not None
    assert (got.driver, got.pool, got.generation, got.slice_count) == (
        dra.DRIVER,
        "node-a",
        1,
        1,
    )
    assert got.devices == (
        Device("gpu-0", "node-a", "gpu", "GPU-node-a-0000", "", dra.A100, ""),
        Device(
            "gpu-1-mig-1g10gb-19-3",
            "node-a",
            "mig",
            "MIG-node-a-1-3",
            "GPU-node-a-0001",
            dra.A100,
            "1g.10gb",
        ),
    )


def test_attributes_may_be_qualified_with_the_drivers_domain() -> None:
    device = dra.gpu_device("n", 0)
    device["attributes"] = {f"{dra.DRIVER}/{k}": v for k, v in device["attributes"].items()}
    got = projections.project_slice(dra.make_slice("n", [device]), DRIVERS)
    assert got is not None
    assert (got.devices[0].kind, got.devices[0].uuid) == ("gpu", "GPU-n-0000")


def test_slices_of_other_drivers_are_not_kept() -> None:
    imex = dra.make_slice("n", [{"name": "channel-0"}], driver="compute-domain.nvidia.com")
    assert projections.project_slice(imex, DRIVERS) is None
    assert projections.project_slice(imex, {"compute-domain.nvidia.com"}) is not None


@pytest.mark.parametrize(
    ("taints", "flags"),
    [
        ([], 0),
        (
            [{"key": "gpu.nvidia.com/xid", "value": "79", "effect": "NoSchedule"}],
            UNAVAILABLE | UNHEALTHY,
        ),
        ([{"key": "gpu.nvidia.com/gpu-lost", "effect": "NoExecute"}], UNAVAILABLE | UNHEALTHY),
        ([{"key": "example.com/maintenance", "effect": "NoSchedule"}], UNAVAILABLE),
        # Non-fatal XIDs and lost monitoring get effect None: neither unavailable nor unhealthy.
        ([{"key": "gpu.nvidia.com/xid", "value": "13", "effect": "None"}], 0),
        ([{"key": "gpu.nvidia.com/unmonitored", "effect": "None"}], 0),
    ],
    ids=["untainted", "fatal-xid", "gpu-lost", "admin-taint", "non-fatal-xid", "unmonitored"],
)
def test_taints_make_a_device_unavailable_and_the_drivers_health_taints_unhealthy(
    taints: list[dict[str, str]], flags: int
) -> None:
    body = dra.make_slice("n", [dra.gpu_device("n", 0, taints=taints)])
    got = projections.project_slice(body, DRIVERS)
    assert got is not None
    assert got.devices[0].taints == flags


def test_where_devices_are_follows_the_slices_node_selection() -> None:
    body = dra.make_slice("n", [dra.gpu_device("n", 0), dra.gpu_device("n", 1)])
    del body["spec"]["nodeName"]
    body["spec"]["perDeviceNodeSelection"] = True
    body["spec"]["devices"][0]["nodeName"] = "n1"
    body["spec"]["devices"][1]["allNodes"] = True
    got = projections.project_slice(body, DRIVERS)
    assert got is not None
    assert [d.node for d in got.devices] == ["n1", ""]
    shared = dra.make_slice("n", [dra.gpu_device("n", 0)])
    del shared["spec"]["nodeName"]
    shared["spec"]["allNodes"] = True
    got = projections.project_slice(shared, DRIVERS)
    assert got is not None
    assert got.devices[0].node == ""  # reachable from every node: no one node's GPU


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["spec"].pop("pool"), "spec.pool is missing"),
        (lambda s: s["spec"]["pool"].update(name=""), "spec.pool.name is missing"),
        (lambda s: s["spec"]["pool"].update(generation="1"), "spec.pool.generation '1'"),
        (lambda s: s["spec"]["pool"].update(resourceSliceCount=0), "resourceSliceCount 0"),
        (lambda s: s["spec"]["devices"].append({"attributes": {}}), "spec.devices[1] has no name"),
    ],
    ids=["no-pool", "no-pool-name", "generation-string", "zero-slices", "nameless-device"],
)
def test_a_malformed_slice_says_what_is_wrong(edit: Any, message: str) -> None:
    body = dra.make_slice("n", [dra.gpu_device("n", 0)])
    edit(body)
    with pytest.raises(MalformedError, match=message.replace("[", r"\[").replace("]", r"\]")):
        projections.project_slice(body, DRIVERS)


def test_counter_sets_and_consumption_are_kept_once_per_shape() -> None:
    # 5,000 nodes of dynamic MIG GPUs publish the same consumptions over and over: every
    # placement of one profile and start shares one tuple, whichever GPU or node it is on.
    first = projections.project_slice(dra.dynamic_mig_slice("n1", 0), DRIVERS)
    second = projections.project_slice(dra.dynamic_mig_slice("n2", 1), DRIVERS)
    assert first is not None
    assert second is not None
    assert first.counter_sets[0][0] == "gpu-0-counter-set"
    assert dict(first.counter_sets[0][1])["multiprocessors"] == 98_000  # thousandths
    assert dict(first.counter_sets[0][1])["memory-slice-7"] == 1_000
    assert len(first.devices) == len(second.devices) == 26
    for a, b in zip(first.devices, second.devices, strict=True):
        assert a.consumes[0][1] is b.consumes[0][1]
    placement = next(d for d in first.devices if d.name == "gpu-0-mig-3g40gb-9-4")
    counters = dict(placement.consumes[0][1])
    assert (counters["memory-slice-4"], counters["memory-slice-7"]) == (1_000, 1_000)
    assert "memory-slice-3" not in counters
    assert (placement.uuid, placement.parent) == ("", dra.gpu_uuid("n1", 0))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s["spec"]["sharedCounters"][0].pop("name"),
            "spec.sharedCounters[0] has no name",
        ),
        (
            lambda s: s["spec"]["sharedCounters"][0]["counters"].update(memory={"value": "lots"}),
            "spec.sharedCounters[0].counters['memory']",
        ),
        (
            lambda s: s["spec"]["devices"][1]["consumesCounters"][0].pop("counterSet"),
            "spec.devices[1].consumesCounters[0] has no counterSet",
        ),
        (
            lambda s: s["spec"]["devices"][1]["consumesCounters"][0].pop("counters"),
            "spec.devices[1].consumesCounters[0].counters is missing",
        ),
    ],
    ids=["nameless-set", "bad-quantity", "no-counter-set", "no-counters"],
)
def test_malformed_counters_say_what_is_wrong(edit: Any, message: str) -> None:
    body = dra.dynamic_mig_slice("n", 0)
    edit(body)
    with pytest.raises(MalformedError, match=message.replace("[", r"\[").replace("]", r"\]")):
        projections.project_slice(body, DRIVERS)


def allocated_claim(devices: list[str], **kwargs: Any) -> dict[str, Any]:
    claim = dra.make_claim("c", "ns", len(devices))
    claim["metadata"]["uid"] = "uid-c"
    claim["status"] = {"allocation": dra.allocation("node-a", devices, **kwargs)}
    return claim


def test_a_claim_keeps_only_its_allocated_device_keys() -> None:
    got = projections.project_claim(allocated_claim(["gpu-1", "gpu-0"]), DRIVERS)
    assert got == projections.ClaimProjection(
        ((dra.DRIVER, "node-a", "gpu-0"), (dra.DRIVER, "node-a", "gpu-1"))
    )
    assert projections.claim_key(allocated_claim(["gpu-0"])) == "uid-c"


@pytest.mark.parametrize(
    "claim",
    [
        dra.make_claim("pending", "ns"),  # not allocated yet
        allocated_claim(["gpu-0"], admin_access=True),  # "not considered as allocated"
        allocated_claim(["channel-0"], driver="compute-domain.nvidia.com"),
    ],
    ids=["unallocated", "admin-access", "other-driver"],
)
def test_claims_that_hold_no_gpu_are_not_kept(claim: dict[str, Any]) -> None:
    assert projections.project_claim(claim, DRIVERS) is None


def test_a_prioritized_list_result_names_its_subrequest_and_counts_the_same() -> None:
    claim = allocated_claim(["gpu-0"], request="gpus/large")
    got = projections.project_claim(claim, DRIVERS)
    assert got is not None
    assert got.devices == ((dra.DRIVER, "node-a", "gpu-0"),)


def test_a_malformed_claim_result_says_what_is_wrong() -> None:
    claim = allocated_claim(["gpu-0"])
    claim["status"]["allocation"]["devices"]["results"][0]["device"] = ""
    with pytest.raises(MalformedError, match=r"results\[0\] names no pool and device"):
        projections.project_claim(claim, DRIVERS)


# --- DeviceClasses -------------------------------------------------------------------------------


def test_nvidias_gpu_class_maps_nvidia_com_gpu_onto_full_gpus() -> None:
    gpu, mig, vfio = dra.gpu_classes()
    got = projections.project_class(gpu)
    assert got is not None
    assert got.resource_name == "nvidia.com/gpu"
    assert got.selector == Selector(dra.DRIVER, (("kind", "gpu"),))
    assert projections.project_class(mig) is None  # maps no extended resource: not kept
    assert projections.project_class(vfio) is None


@pytest.mark.parametrize(
    ("expressions", "expected"),
    [
        (["device.driver == 'd'"], Selector("d", ())),
        (
            ['device.driver == "d" && device.attributes["d"]["profile"] == "1g.10gb"'],
            Selector("d", (("profile", "1g.10gb"),)),
        ),
        (
            ["device.attributes['d'].type == 'mig'", "device.attributes['d'].productName == 'X'"],
            Selector("d", (("kind", "mig"), ("product", "X"))),
        ),
    ],
    ids=["driver-only", "quoted-attribute", "two-selectors"],
)
def test_equalities_joined_by_and_are_read(expressions: list[str], expected: Selector) -> None:
    assert projections.read_selector(expressions) == expected


@pytest.mark.parametrize(
    ("expressions", "why"),
    [
        (["device.driver == 'd' || device.driver == 'e'"], "cannot read CEL term"),
        (["device.attributes['d'].architecture == 'Hopper'"], "'architecture' is not one"),
        (["device.capacity['d'].memory.compareTo(quantity('40Gi')) >= 0"], "cannot read CEL"),
        (["device.driver == 'd'", "device.driver == 'e'"], "exactly one driver"),
        ([], "exactly one driver"),
        (["device.attributes['d'].type == 'gpu' && device.attributes['d'].type == 'mig'"], "two"),
    ],
    ids=["or", "unkept-attribute", "capacity", "two-drivers", "no-selector", "contradiction"],
)
def test_other_cel_is_not_guessed_at(expressions: list[str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        projections.read_selector(expressions)


def test_a_class_whose_selector_cannot_be_read_is_kept_with_the_reason() -> None:
    body = copy.deepcopy(dra.gpu_classes()[0])
    body["spec"]["selectors"][0]["cel"]["expression"] += " && device.capacity['x'].memory > 1"
    got = projections.project_class(body)
    assert got is not None
    assert got.selector is None
    assert "cannot read CEL term" in got.unreadable


# --- DRAExtendedResource pods ---------------------------------------------------------------------


def test_a_pod_names_the_resources_dra_serves_in_its_request_mappings() -> None:
    pod = {
        "status": {
            "extendedResourceClaimStatus": dra.extended_resource_claim_status(
                "p-extended-resources-x", [("main", "nvidia.com/gpu", "container-0-request-0")]
            )
        }
    }
    assert projections.served_by_dra(pod) == {"nvidia.com/gpu"}
    assert projections.served_by_dra({"status": {"phase": "Running"}}) == frozenset()
    assert projections.served_by_dra({}) == frozenset()
