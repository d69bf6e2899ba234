"""The answers behind the MCP tools, computed from snapshots built in the test (no cluster)."""

from __future__ import annotations

import sys
import threading
from dataclasses import replace
from datetime import timedelta
from types import MappingProxyType

import pytest

from gpu_inventory.api.models import Condition, GPUNode, NodeResource, RemappedRows
from gpu_inventory.mcpserver import shapes, views
from gpu_inventory.mcpserver.snapshot import Snapshot
from gpu_inventory.mcpserver.views.nodes import GPUNodes
from gpu_inventory.testing import samples
from gpu_inventory.testing.legacy_shape import shape_problems, target

NOW = samples.EPOCH + timedelta(minutes=1)


def snapshot_of(*nodes: GPUNode, **inventory_args: object) -> Snapshot:
    return Snapshot(
        inventory=samples.inventory(nodes, **inventory_args),  # type: ignore[arg-type]
        nodes=MappingProxyType({n.metadata.name: n for n in nodes}),
        synced=True,
        connected=True,
        server="https://api.example:6443",
    )


def answer(snapshot: Snapshot, **args: object) -> shapes.InventoryAnswer:
    return views.inventory_answer(snapshot, now=NOW, max_staleness_seconds=300, **args)  # type: ignore[arg-type]


@pytest.fixture
def small() -> Snapshot:
    """Two T4 nodes and an A100 node, one T4 GPU unhealthy, one node NotReady."""
    t4_sick = samples.gpunode(
        "t4-b",
        gpus=[
            samples.gpu(0, node="t4-b"),
            samples.gpu(1, node="t4-b", health="Unhealthy", reasons=["XID 79"]),
        ],
        allocated=1,
    )
    return snapshot_of(
        samples.gpunode("t4-a", gpus=4, allocated=1),
        t4_sick,
        samples.gpunode(
            "a100",
            gpus=8,
            product="NVIDIA-A100-SXM4-80GB",
            gpu_name="NVIDIA A100-SXM4-80GB",
            allocated=2,
            ready=False,
        ),
    )


# --- get_gpu_inventory: the legacy shape ---------------------------------------------------------


def test_answer_keeps_every_legacy_field_name_and_type(small: Snapshot) -> None:
    data = answer(small).model_dump(mode="json")

    assert data["status"] == "success"
    assert shape_problems(target(), data) == []


def test_summary_is_the_inventory_totals(small: Snapshot) -> None:
    summary = answer(small).cluster_summary

    assert (summary.total_nodes, summary.total_gpus) == (3, 14)
    assert (summary.gpus_allocatable, summary.gpus_allocated, summary.gpus_available) == (14, 4, 10)
    # NVML's names, as gpus[].name shows them, not the GFD labels ("Tesla-T4").
    assert summary.gpu_types == ["NVIDIA A100-SXM4-80GB", "Tesla T4"]
    assert (summary.ready_nodes, summary.unhealthy_gpus) == (2, 1)


def test_node_carries_agent_pod_status_and_primary_resource(small: Snapshot) -> None:
    by_name = {n.node_name: n for n in answer(small).nodes}

    t4 = by_name["t4-a"]
    assert t4.pod_name == "gpu-inventory-agent-t4-a"
    assert t4.status == "ready"
    assert by_name["a100"].status == "not_ready"
    assert t4.kubernetes is not None
    assert t4.kubernetes.gpu_resources == shapes.GPUResources(
        capacity=4, allocatable=4, allocated=1, available=3
    )
    assert t4.kubernetes.labels["nvidia.com/gpu.product"] == "Tesla-T4"
    assert t4.kubernetes.conditions["Ready"] is True
    gpu = t4.gpus[0]
    assert (gpu.index, gpu.name, gpu.uuid) == (0, "Tesla T4", "GPU-t4-a-00")
    assert (gpu.memory_total, gpu.temperature, gpu.utilization) == (samples.T4_MEMORY, 30, 0)


def test_every_gpu_resource_is_listed_beside_the_primary_one() -> None:
    shared = NodeResource(name="nvidia.com/gpu.shared", capacity=8, allocatable=8, allocated=3)
    snap = snapshot_of(samples.gpunode("n", gpus=2, extra_resources=[shared]))

    kubernetes = answer(snap).nodes[0].kubernetes
    assert kubernetes is not None
    assert [r.name for r in kubernetes.all_gpu_resources] == [
        "nvidia.com/gpu",
        "nvidia.com/gpu.shared",
    ]
    assert kubernetes.all_gpu_resources[1].available == 5


def test_without_k8s_metadata_the_key_is_absent_not_null(small: Snapshot) -> None:
    data = answer(small, include_k8s_metadata=False).model_dump(mode="json")

    assert all("kubernetes" not in node for node in data["nodes"])
    assert all("kubernetes" in node for node in answer(small).model_dump(mode="json")["nodes"])


def test_node_without_agent_has_no_pod_and_no_gpus_but_keeps_its_numbers() -> None:
    snap = snapshot_of(samples.gpunode("bare", gpus=0, allocatable=4, agent=False))

    node = answer(snap).nodes[0]
    assert node.pod_name == ""
    assert node.gpus == []
    assert (node.allocatable, node.available, node.agent_state) == (4, 4, "Missing")


def test_a_node_known_only_from_its_inventory_row_is_listed() -> None:
    gpunode = samples.gpunode("row-only", gpus=2, allocated=1)
    snap = Snapshot(inventory=samples.inventory([gpunode]), nodes=MappingProxyType({}), synced=True)

    node = answer(snap).nodes[0]
    assert (node.node_name, node.status, node.product) == ("row-only", "ready", "Tesla-T4")
    assert (node.allocatable, node.allocated, node.gpu_count) == (2, 1, 2)


# --- filters and limit ---------------------------------------------------------------------------


def test_nodes_are_sorted_and_limit_truncates_honestly(small: Snapshot) -> None:
    result = answer(small, limit=2)

    assert [n.node_name for n in result.nodes] == ["a100", "t4-a"]
    assert (result.nodes_matched, result.truncated) == (3, True)
    assert answer(small, limit=3).truncated is False


def test_node_filter_returns_that_node_only(small: Snapshot) -> None:
    result = answer(small, node="t4-b")

    assert [n.node_name for n in result.nodes] == ["t4-b"]
    assert result.cluster_summary.total_nodes == 3  # filters never shrink the summary


def test_unknown_node_is_an_error_listing_the_gpu_nodes(small: Snapshot) -> None:
    with pytest.raises(views.ArgumentError, match=r"^node 'nope' is not a GPU node") as error:
        answer(small, node="nope")
    assert "a100, t4-a, t4-b" in str(error.value)


def test_unknown_node_in_an_empty_cluster_says_there_are_no_gpu_nodes() -> None:
    with pytest.raises(views.ArgumentError, match="the inventory has no GPU nodes"):
        answer(snapshot_of(), node="nope")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("Tesla-T4", ["t4-a", "t4-b"], id="exact label"),
        pytest.param("tesla t4", ["t4-a", "t4-b"], id="case and spaces"),
        pytest.param("T4", ["t4-a", "t4-b"], id="one word"),
        pytest.param("A100", ["a100"], id="word inside a longer name"),
        pytest.param("nvidia a100 80gb", ["a100"], id="words in order"),
    ],
)
def test_product_filter_matches_whole_words(
    small: Snapshot, query: str, expected: list[str]
) -> None:
    assert [n.node_name for n in answer(small, product=query).nodes] == expected


@pytest.mark.parametrize("query", ["A10", "V100", "80gb a100"])
def test_unknown_product_is_an_error_listing_each_product_once(small: Snapshot, query: str) -> None:
    """In the vocabulary of gpu_types (NVML's names), so the model sees one set of names."""
    with pytest.raises(
        views.ArgumentError, match=rf"^product '{query}' matches no GPU product"
    ) as error:
        answer(small, product=query)
    assert str(error.value).endswith("products are: NVIDIA A100-SXM4-80GB, Tesla T4")
    assert answer(small).cluster_summary.gpu_types == ["NVIDIA A100-SXM4-80GB", "Tesla T4"]


def test_gpu_types_are_nvml_names_whatever_the_labels_say() -> None:
    """GFD's label spells MIG ('-MIG-1g.10gb') and time-slicing ('-SHARED') into the product;
    NVML names the GPU. Only a node that reports no GPU names falls back to its label."""
    mig = samples.gpunode(
        "mig",
        gpus=2,
        product="NVIDIA-A100-SXM4-80GB-MIG-1g.10gb",
        gpu_name="NVIDIA A100-SXM4-80GB",
    )
    shared = samples.gpunode("shared", gpus=1, product="Tesla-T4-SHARED", gpu_name="Tesla T4")
    unreported = samples.gpunode("new", gpus=0, product="NVIDIA-L4", agent=False, allocatable=1)

    summary = answer(snapshot_of(mig, shared, unreported)).cluster_summary

    assert summary.gpu_types == ["NVIDIA A100-SXM4-80GB", "NVIDIA-L4", "Tesla T4"]
    resource = views.inventory_resource(
        snapshot_of(mig, shared, unreported), now=NOW, max_staleness_seconds=300
    )
    assert resource.cluster_summary.gpu_types == summary.gpu_types


def test_a_real_product_on_other_nodes_gives_an_empty_list_not_an_error(small: Snapshot) -> None:
    result = answer(small, node="a100", product="T4")

    assert (result.nodes, result.nodes_matched) == ([], 0)


def test_only_unhealthy_lists_sick_nodes_with_only_their_sick_gpus(small: Snapshot) -> None:
    result = answer(small, only_unhealthy_or_degraded=True)

    assert [n.node_name for n in result.nodes] == ["t4-b"]
    assert [(g.index, g.health, g.health_reasons) for g in result.nodes[0].gpus] == [
        (1, "Unhealthy", ["XID 79"])
    ]


def test_only_unhealthy_in_a_healthy_cluster_is_an_honest_empty_list() -> None:
    result = answer(snapshot_of(samples.gpunode("ok", gpus=2)), only_unhealthy_or_degraded=True)

    assert (result.nodes, result.nodes_matched, result.truncated) == ([], 0, False)


@pytest.mark.parametrize("limit", [0, -1, views.MAX_LIMIT + 1])
def test_limit_out_of_range_names_the_argument(small: Snapshot, limit: int) -> None:
    with pytest.raises(
        views.ArgumentError, match=rf"^limit must be between 1 and {views.MAX_LIMIT}"
    ):
        answer(small, limit=limit)


@pytest.mark.parametrize("argument", ["node", "product"])
def test_blank_text_arguments_name_the_argument(small: Snapshot, argument: str) -> None:
    with pytest.raises(views.ArgumentError, match=rf"^{argument} must be a non-empty string"):
        answer(small, **{argument: "  "})


def test_one_memo_serves_worker_threads_on_changing_snapshots() -> None:
    """Tool calls run on several worker threads at once, each on the snapshot it took; every
    new snapshot makes the summary walk (and prune) the memo's table of GPU names."""
    snapshots = []
    for prefix in "abcd":
        snapshot = snapshot_of(*(samples.gpunode(f"{prefix}{i:03d}", gpus=1) for i in range(200)))
        assert snapshot.inventory is not None
        assert snapshot.inventory.status is not None
        gpunodes = GPUNodes.of(snapshot.nodes, snapshot.inventory, snapshot.inventory.status)
        snapshots.append((snapshot, snapshot.inventory, gpunodes))
    memo = views.AnswerMemo()
    failures: list[BaseException] = []

    def calls(offset: int) -> None:
        try:
            for turn in range(100):
                memo.summary(*snapshots[(turn + offset) % len(snapshots)])
        except BaseException as error:  # reported by the test's own thread
            failures.append(error)

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        workers = [threading.Thread(target=calls, args=(k,)) for k in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(switching)

    assert failures == []


def test_memo_reuses_unchanged_nodes_and_rebuilds_changed_ones(small: Snapshot) -> None:
    memo = views.AnswerMemo()
    first = {n.node_name: n for n in answer(small, memo=memo).nodes}
    changed = samples.gpunode("t4-a", gpus=4, allocated=3)
    later = snapshot_of(changed, small.nodes["t4-b"], small.nodes["a100"])

    second = {n.node_name: n for n in answer(later, memo=memo).nodes}
    assert second["a100"] is first["a100"]
    assert second["t4-a"].allocated == 3


def test_memo_answers_as_a_fresh_computation_when_the_primary_resource_changes(
    small: Snapshot,
) -> None:
    memo = views.AnswerMemo()
    answer(small, memo=memo)
    assert small.inventory is not None
    spec = small.inventory.spec.model_copy(update={"primary_resource": "nvidia.com/gpu.shared"})
    switched = replace(small, inventory=small.inventory.model_copy(update={"spec": spec}))

    assert answer(switched, memo=memo).nodes == answer(switched).nodes


# --- availability ------------------------------------------------------------------------------


def test_before_the_first_list_the_answer_says_it_is_loading() -> None:
    with pytest.raises(views.InventoryUnavailableError, match="still loading"):
        answer(Snapshot())


def test_an_unreachable_api_server_is_named_with_the_reason() -> None:
    snap = Snapshot(last_error="connection refused", server="https://10.0.0.1:6443")

    with pytest.raises(views.InventoryUnavailableError) as error:
        answer(snap)
    assert str(error.value).startswith(
        "The Kubernetes API server at https://10.0.0.1:6443 cannot be reached"
    )
    assert "connection refused" in str(error.value)


def test_a_missing_inventory_means_the_operator_is_not_running() -> None:
    snap = Snapshot(synced=True, connected=True)

    with pytest.raises(views.InventoryUnavailableError, match="operator is not running yet"):
        answer(snap)


def test_an_inventory_without_status_means_the_operator_has_not_reconciled() -> None:
    inventory = samples.inventory([]).model_copy(update={"status": None})
    snap = Snapshot(inventory=inventory, synced=True, connected=True)

    with pytest.raises(views.InventoryUnavailableError, match="has no status yet"):
        answer(snap)


def test_a_short_outage_serves_cached_data_with_a_warning(small: Snapshot) -> None:
    snap = _down(small, seconds=20)

    result = answer(snap)
    assert result.nodes
    assert result.warnings == [
        "Serving cached data: lost contact with the Kubernetes API server 20s ago "
        "(connection refused); the answer may be out of date."
    ]


def test_a_long_outage_refuses_to_serve_stale_data(small: Snapshot) -> None:
    with pytest.raises(views.InventoryUnavailableError, match="too old to trust"):
        answer(_down(small, seconds=301))


def test_an_inventory_that_is_not_ready_is_flagged() -> None:
    snap = snapshot_of(samples.gpunode("n", gpus=1), ready=False)

    assert answer(snap).warnings == [
        "The inventory is not current (Ready=False, Indexing): indexing nodes and pods"
    ]


def _down(snapshot: Snapshot, *, seconds: int) -> Snapshot:
    return replace(
        snapshot,
        connected=False,
        last_error="connection refused",
        disconnected_since=NOW - timedelta(seconds=seconds),
    )


# --- find_gpu_capacity ---------------------------------------------------------------------------


def capacity(snapshot: Snapshot, count: int, product: str | None = None) -> shapes.CapacityAnswer:
    return views.capacity_answer(
        snapshot, now=NOW, max_staleness_seconds=300, count=count, product=product
    )


@pytest.fixture
def mixed() -> Snapshot:
    all_sick = [samples.gpu(i, node="broken", health="Unhealthy") for i in range(4)]
    return snapshot_of(
        samples.gpunode("big", gpus=8, allocated=0),  # 8 free
        samples.gpunode("half", gpus=8, allocated=4),  # 4 free
        samples.gpunode("tight", gpus=4, allocated=1),  # 3 free
        samples.gpunode("down", gpus=8, ready=False),  # 8 free, NotReady
        samples.gpunode("broken", gpus=all_sick),  # 4 free, every GPU unhealthy
        samples.gpunode("a100", gpus=8, product="NVIDIA-A100-SXM4-80GB", allocated=6),  # 2 free
    )


def test_capacity_lists_tightest_fit_first(mixed: Snapshot) -> None:
    result = capacity(mixed, 3)

    assert [(n.node_name, n.available, n.leftover) for n in result.nodes] == [
        ("tight", 3, 0),
        ("half", 4, 1),
        ("big", 8, 5),
    ]
    assert result.message.startswith("3 node(s) can take a pod asking for 3 nvidia.com/gpu")


def test_capacity_skips_not_ready_nodes_and_nodes_with_every_gpu_unhealthy(
    mixed: Snapshot,
) -> None:
    names = {n.node_name for n in capacity(mixed, 1).nodes}

    assert names == {"a100", "tight", "half", "big"}


def test_capacity_ties_are_broken_by_name() -> None:
    snap = snapshot_of(samples.gpunode("b", gpus=2), samples.gpunode("a", gpus=2))

    assert [n.node_name for n in capacity(snap, 2).nodes] == ["a", "b"]


def test_capacity_filters_by_product(mixed: Snapshot) -> None:
    result = capacity(mixed, 2, product="a100")

    assert [n.node_name for n in result.nodes] == ["a100"]
    assert result.product == "a100"


def test_no_fit_explains_the_largest_free_block(mixed: Snapshot) -> None:
    result = capacity(mixed, 9)

    assert result.nodes == []
    assert result.largest_free_block == 8
    assert result.message == (
        "No Ready node has 9 free nvidia.com/gpu; the largest free block is 8 on big."
    )


def test_no_free_gpu_at_all_says_so() -> None:
    snap = snapshot_of(samples.gpunode("full", gpus=2, allocated=2))

    assert capacity(snap, 1).message == "No Ready node has any free nvidia.com/gpu."


@pytest.mark.parametrize("count", [0, -2, views.MAX_COUNT + 1])
def test_count_out_of_range_names_the_argument(mixed: Snapshot, count: int) -> None:
    with pytest.raises(views.ArgumentError, match=r"^count must be between 1 and"):
        capacity(mixed, count)


def test_capacity_with_an_unknown_product_is_an_error(mixed: Snapshot) -> None:
    with pytest.raises(views.ArgumentError, match=r"^product 'H200' matches no GPU product"):
        capacity(mixed, 1, product="H200")


# --- get_gpu_health ----------------------------------------------------------------------------


def health(snapshot: Snapshot, **args: object) -> shapes.HealthAnswer:
    return views.health_answer(snapshot, now=NOW, max_staleness_seconds=300, **args)  # type: ignore[arg-type]


@pytest.fixture
def sick() -> Snapshot:
    old = samples.gpu(
        0, node="n1", health="Unhealthy", xids=[samples.xid(48, minute=1, action="ResetGPU")]
    )
    new = samples.gpu(
        1,
        node="n1",
        health="Degraded",
        xids=[
            samples.xid(13, minute=2, action="RestartApplication", xid_class="Application"),
            samples.xid(31, minute=9, action="RestartApplication", xid_class="Application"),
        ],
    )
    quiet = samples.gpu(0, node="n2", health="Unhealthy", reasons=["fell off the bus"])
    quiet_degraded = samples.gpu(1, node="n2", health="Degraded", reasons=["thermal slowdown"])
    return snapshot_of(
        samples.gpunode("n1", gpus=[old, new, samples.gpu(2, node="n1")]),
        samples.gpunode("n2", gpus=[quiet_degraded, quiet], ready=False),
        samples.gpunode("n3", gpus=2, heartbeat=NOW - timedelta(minutes=10)),
    )


def test_health_lists_sick_gpus_newest_event_first(sick: Snapshot) -> None:
    result = health(sick)

    assert [(g.node_name, g.index) for g in result.gpus] == [
        ("n1", 1),  # XID at minute 9
        ("n1", 0),  # XID at minute 1
        ("n2", 0),  # no event: Unhealthy before Degraded
        ("n2", 1),
    ]
    assert (result.unhealthy_gpus, result.degraded_gpus) == (2, 2)
    assert [x.xid for x in result.gpus[0].recent_xids] == [31, 13]
    assert result.gpus[0].last_event_time == samples.EPOCH.replace(minute=9)


def test_health_reports_not_ready_nodes_and_stale_agents(sick: Snapshot) -> None:
    result = health(sick)

    assert result.nodes_not_ready == ["n2"]
    assert result.stale_agents == ["n3"]


def test_health_counts_an_invalid_agent_report_as_the_operator_does() -> None:
    broken = samples.gpunode("broken", gpus=2, agent_state="Invalid")  # e.g. a future heartbeat
    result = health(snapshot_of(broken, samples.gpunode("ok", gpus=2)))

    assert result.stale_agents == ["broken"]


def test_health_can_list_unhealthy_gpus_only(sick: Snapshot) -> None:
    result = health(sick, severity="unhealthy")

    assert [(g.node_name, g.index) for g in result.gpus] == [("n1", 0), ("n2", 0)]
    assert (result.unhealthy_gpus, result.degraded_gpus) == (2, 2)


def test_a_healthy_cluster_has_an_empty_health_list() -> None:
    result = health(snapshot_of(samples.gpunode("ok", gpus=4)))

    assert (result.gpus, result.unhealthy_gpus, result.stale_agents) == ([], 0, [])


@pytest.mark.parametrize(
    ("gpu_args", "expected"),
    [
        pytest.param({}, ("None", "no signal"), id="healthy"),
        pytest.param(
            {"health": "Unhealthy", "reasons": ["gone"]},
            ("Investigate", "health Unhealthy: gone"),
            id="sick without a signal",
        ),
        pytest.param(
            {"xids": [samples.xid(13, minute=1, action="RestartApplication")]},
            ("RestartApplication", "XID 13 (Memory)"),
            id="application xid",
        ),
        pytest.param(
            {
                "recovery_action": "NodeReboot",
                "xids": [samples.xid(48, minute=1, action="ResetGPU")],
            },
            ("RebootNode", "driver recovery action NodeReboot"),
            id="the driver's verdict outranks a milder xid",
        ),
        pytest.param(
            {"remapped_rows": RemappedRows(pending=True)},
            ("ResetGPU", "row remapping pending until a GPU reset"),
            id="pending row remap",
        ),
        pytest.param(
            {
                "remapped_rows": RemappedRows(failure=True),
                "recovery_action": "GpuReset",
            },
            ("ReplaceGPU", "row remapping failed"),
            id="failed row remap",
        ),
        pytest.param(
            {"recovery_action": "DrainP2P"},
            ("DrainAndResetGPU", "driver recovery action DrainP2P"),
            id="drain p2p",
        ),
    ],
)
def test_recommended_action_is_the_most_disruptive_signal(
    gpu_args: dict[str, object], expected: tuple[str, str]
) -> None:
    assert views.recommend(samples.gpu(0, **gpu_args)) == expected  # type: ignore[arg-type]


# --- the resource --------------------------------------------------------------------------------


def test_resource_is_the_summary_and_the_warnings(small: Snapshot) -> None:
    resource = views.inventory_resource(small, now=NOW, max_staleness_seconds=300)

    assert resource.cluster_summary == answer(small).cluster_summary
    assert resource.warnings == []


def test_conditions_are_carried_into_the_summary() -> None:
    snap = snapshot_of(samples.gpunode("n", gpus=1))
    inventory = snap.inventory
    assert inventory is not None
    assert inventory.status is not None
    stalled = Condition(
        type="Stalled",
        status="True",
        reason="Forbidden",
        message="cannot list pods",
        last_transition_time=samples.EPOCH,
    )
    status = inventory.status.model_copy(
        update={"conditions": [*inventory.status.conditions, stalled]}
    )
    snap = Snapshot(
        inventory=inventory.model_copy(update={"status": status}),
        nodes=snap.nodes,
        synced=True,
        connected=True,
    )

    result = answer(snap)
    assert [c.type for c in result.cluster_summary.conditions] == ["Ready", "Stalled"]
    assert result.warnings == ["The operator is stalled (Forbidden): cannot list pods"]


# --- DRA nodes -----------------------------------------------------------------------------------


@pytest.fixture
def dra_and_plugin() -> Snapshot:
    """A device-plugin T4 node (1 of 4 free) and a DRA A100 node (3 of 4 free) in one inventory."""
    return snapshot_of(
        samples.gpunode("t4", gpus=4, allocated=3),
        samples.gpunode(
            "a100-dra", gpus=4, product="NVIDIA-A100-SXM4-80GB", allocated=1, source="DRA"
        ),
    )


def test_dra_and_device_plugin_nodes_answer_with_their_source(dra_and_plugin: Snapshot) -> None:
    got = answer(dra_and_plugin)
    assert {n.node_name: n.source for n in got.nodes} == {"a100-dra": "DRA", "t4": "DevicePlugin"}
    assert [(r.name, r.source) for r in got.cluster_summary.resources] == [
        ("nvidia.com/gpu", "DRA"),
        ("nvidia.com/gpu", "DevicePlugin"),
    ]
    assert got.cluster_summary.gpus_available == 4
    dra_node = next(n for n in got.nodes if n.node_name == "a100-dra")
    assert dra_node.kubernetes is not None
    assert [r.source for r in dra_node.kubernetes.all_gpu_resources] == ["DRA"]


def test_capacity_is_found_on_dra_nodes_too(dra_and_plugin: Snapshot) -> None:
    got = views.capacity_answer(dra_and_plugin, now=NOW, max_staleness_seconds=300, count=2)
    assert [(n.node_name, n.source, n.available) for n in got.nodes] == [("a100-dra", "DRA", 3)]


def test_capacity_says_how_to_ask_and_offers_dra_nodes_only_to_claims(
    dra_and_plugin: Snapshot,
) -> None:
    """On stock 1.34 a pod with `limits: nvidia.com/gpu` never lands on a DRA node: it needs a
    ResourceClaim (DeviceClassSpec.ExtendedResourceName is gated by DRAExtendedResource)."""
    got = views.capacity_answer(dra_and_plugin, now=NOW, max_staleness_seconds=300, count=1)
    assert {n.node_name: n.request_as for n in got.nodes} == {
        "t4": "ExtendedResource",
        "a100-dra": "ResourceClaim",
    }
    assert got.message == (
        "1 node(s) can take a pod asking for 1 nvidia.com/gpu now (resources.limits); the best"
        " fit is t4 (1 free); 1 DRA node(s) have 1 nvidia.com/gpu free for a pod with a"
        " ResourceClaim of the DRA driver's DeviceClass; the best fit is a100-dra (3 free)."
    )
    only_dra = views.capacity_answer(dra_and_plugin, now=NOW, max_staleness_seconds=300, count=2)
    assert not only_dra.message.startswith("1 node(s) can take a pod asking")
    assert only_dra.message.startswith("1 DRA node(s) have 2 nvidia.com/gpu free")
