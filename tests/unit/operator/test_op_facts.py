"""One node's facts: the agent's state by its heartbeat, a count not believed beyond what the Node
advertises, and when time alone changes them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpu_inventory.api.constants import Reason
from gpu_inventory.api.models import GPUInventorySpec
from gpu_inventory.operator import projections, verdicts
from gpu_inventory.operator.accounting import ResourceCounts
from gpu_inventory.operator.aggregates import FactsCache
from gpu_inventory.operator.dra.accounting import NodeCounts
from gpu_inventory.operator.facts import node_facts
from gpu_inventory.operator.projections import DEFAULT_PROJECTOR
from gpu_inventory.testing.builders import make_gpunode, make_node

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
SPEC = GPUInventorySpec()


def node(name: str = "n1", **kwargs: Any) -> projections.NodeProjection:
    body = make_node(name, **kwargs)
    body["metadata"]["creationTimestamp"] = (NOW - timedelta(days=1)).isoformat()
    return projections.project_node(body, DEFAULT_PROJECTOR)


def agent(age: float = 5, **kwargs: Any) -> projections.GPUNodeProjection:
    beat = (NOW - timedelta(seconds=age)).isoformat()
    return projections.project_gpunode(make_gpunode("n1", heartbeat=beat, **kwargs))


@pytest.mark.parametrize(
    ("case", "gpunode", "state", "problem"),
    [
        ("no GPUNode", None, "Missing", True),
        ("fresh heartbeat", agent(5, gpus=8), "Reporting", False),
        ("heartbeat older than agentStaleAfterSeconds", agent(301, gpus=8), "Stale", True),
        ("NVML not available", agent(5, gpus=0, nvml=False), "NVMLUnavailable", False),
        ("heartbeat an hour ahead", agent(-3600, gpus=8), "Invalid", True),
    ],
)
def test_agent_state(case: str, gpunode: Any, state: str, problem: bool) -> None:
    facts = node_facts(node(gpus=8), gpunode, {}, SPEC, now=NOW)
    assert (facts.agent, facts.agent_problem) == (state, problem), case


def test_a_hostile_count_is_not_believed_and_the_node_is_flagged() -> None:
    """The measured attack: 100,000 GPUs and a fresh heartbeat took the cluster from 392 to
    100,384. The schema now bounds a GPUNode to 32 GPUs; the cross-check covers the rest."""
    hostile = agent(5, gpus=32, unhealthy=32)
    facts = node_facts(node(gpus=1), hostile, {}, SPEC, now=NOW)
    assert facts.gpus == 1  # the GFD label's count, not the agent's
    assert facts.unhealthy == 0
    assert (facts.agent, facts.agent_problem) == ("Invalid", True)
    assert "reports 32 GPUs" in facts.agent_note


def test_a_count_below_the_nodes_is_believed() -> None:
    """A GPU that fell off the bus: NVML sees 7 while the device plugin still says 8."""
    facts = node_facts(node(gpus=8), agent(5, gpus=7), {}, SPEC, now=NOW)
    assert (facts.gpus, facts.agent) == (7, "Reporting")


def test_mig_and_shared_capacity_bound_the_count_without_gfd() -> None:
    mig = node(gpus=6, resources={"nvidia.com/mig-1g.10gb": "14"})
    bare = dataclasses.replace(mig, gpu_count=None, labels=())
    facts = node_facts(bare, agent(5, gpus=8), {}, SPEC, now=NOW)
    assert (facts.gpus, facts.agent) == (8, "Reporting")


def test_facts_expire_when_the_heartbeat_would_turn_stale() -> None:
    facts = node_facts(node(gpus=8), agent(100, gpus=8), {}, SPEC, now=NOW)
    assert facts.expires == NOW + timedelta(seconds=201)


def test_the_cache_recomputes_dirty_and_expired_nodes_only() -> None:
    nodes = {"n1": node(gpus=8), "n2": node("n2", gpus=8)}
    gpunodes = {"n1": agent(290, gpus=8)}
    cache = FactsCache()
    changed = cache.update(
        nodes=nodes, gpunodes=gpunodes, allocated={}, dirty=(), spec=SPEC, now=NOW
    )
    assert changed == {"n1", "n2"}
    before = cache.facts["n1"]
    assert before.agent == "Reporting"
    later = NOW + timedelta(seconds=20)
    changed = cache.update(
        nodes=nodes, gpunodes=gpunodes, allocated={}, dirty=(), spec=SPEC, now=later
    )
    assert changed == {"n1"}  # its heartbeat went stale; n2 was not touched
    after = cache.facts["n1"]
    assert after.agent == "Stale"


def test_a_node_that_loses_its_gpus_leaves_the_cache() -> None:
    cache = FactsCache()
    cache.update(
        nodes={"n1": node(gpus=8)}, gpunodes={}, allocated={}, dirty=(), spec=SPEC, now=NOW
    )
    changed = cache.update(
        nodes={"n1": node()}, gpunodes={}, allocated={}, dirty={"n1"}, spec=SPEC, now=NOW
    )
    assert changed == {"n1"}
    assert cache.facts == {}


def test_mixed_mig_without_gfd_is_believed_whatever_the_spec_selects() -> None:
    """The review's case: 2 whole GPUs and 42 MIG devices, no GFD labels, and a spec that
    selects nvidia.com/gpu only: the agent's 8 GPUs are plausible."""
    body = make_node("n1", gpus=2, resources={"nvidia.com/mig-1g.10gb": "42"})
    body["metadata"]["labels"] = {}
    only_gpus = GPUInventorySpec(resource_names=["nvidia.com/gpu"])
    projector = projections.Projector.for_spec(only_gpus)
    bare = projections.project_node(body, projector)
    facts = node_facts(bare, agent(5, gpus=8), {}, only_gpus, now=NOW)
    assert (facts.agent, facts.gpus) == ("Reporting", 8)


def test_gpu_count_under_the_single_mig_strategy_is_not_a_physical_count() -> None:
    """GFD's README: under the single strategy nvidia.com/gpu.count is the number of MIG
    devices (56 on an 8-GPU node with 7 slices each)."""
    single = node(
        resources={"nvidia.com/gpu": "56"},
        labels={"nvidia.com/mig.strategy": "single", "nvidia.com/gpu.count": "56"},
    )
    assert node_facts(single, None, {}, SPEC, now=NOW).gpus == 0  # unknown without an agent
    assert node_facts(single, agent(5, gpus=8), {}, SPEC, now=NOW).gpus == 8


# --- nodes with DRA GPUs ------------------------------------------------------------------------

GPU = "nvidia.com/gpu"


def dra_counts(gpus: int, allocated: int = 0) -> NodeCounts:
    """What DRA says of a node whose driver publishes `gpus` whole GPUs."""
    counts = ResourceCounts(gpus, gpus, allocated, gpus - allocated)
    return NodeCounts({GPU: counts} if gpus else {}, gpus, 0, "NVIDIA-A100-80GB")


def mixed_totals(gpu_count_label: str) -> FactsCache:
    """`mix`: the device plugin advertises 4 nvidia.com/gpu (a pod holds 1) and the DRA
    driver publishes 2 GPUs (a claim holds 1); GFD counts `gpu_count_label` GPUs."""
    cache = FactsCache()
    cache.update(
        nodes={"mix": node("mix", gpus=4, labels={"nvidia.com/gpu.count": gpu_count_label})},
        gpunodes={},
        allocated={"mix": {GPU: 1}},
        dirty=(),
        spec=SPEC,
        now=NOW,
        dra=lambda name: dra_counts(2, allocated=1) if name == "mix" else None,
    )
    return cache


def test_a_node_with_both_sources_adds_each_into_its_own_row() -> None:
    """The 1.34 scheduler serves nvidia.com/gpu through DRA only where allocatable has none
    (dynamicresources, extended resources), but a pod's own claim takes DRA devices anywhere:
    one node can carry both kinds, and neither may be reported as the other."""
    cache = mixed_totals("6")
    assert cache.totals.resources == {
        (GPU, "DevicePlugin"): [4, 4, 1, 3],
        (GPU, "DRA"): [2, 2, 1, 1],
    }
    facts = cache.facts["mix"]
    assert (facts.gpus, facts.primary.allocatable, facts.primary.allocated) == (6, 6, 2)
    assert facts.advertised_twice == ""
    problems = verdicts.FleetProblems(advertised_twice=cache.totals.advertised_twice)
    assert verdicts.degraded(problems).status == "False"


def test_gpus_offered_by_both_sources_beyond_gfds_count_flag_the_node() -> None:
    cache = mixed_totals("4")  # 4 + 2 advertised, NVML counts 4: two GPUs offered twice
    facts = cache.facts["mix"]
    assert facts.gpus == 4  # capped at what GFD counts
    assert "advertised twice" in facts.advertised_twice
    assert "mix" in cache.totals.attention
    verdict = verdicts.degraded(
        verdicts.FleetProblems(advertised_twice=cache.totals.advertised_twice)
    )
    assert (verdict.status, verdict.reason) == ("True", Reason.GPUS_ADVERTISED_TWICE)
    assert "mix" in verdict.message


def test_time_sliced_replicas_are_not_taken_for_gpus_advertised_twice() -> None:
    """Time-slicing with 4 replicas: 2 GPUs advertised as 8 nvidia.com/gpu (GFD labels
    nvidia.com/gpu.replicas=4), beside 2 DRA GPUs, of the 4 GFD counts."""
    shared = node(
        "mix",
        gpus=8,
        labels={"nvidia.com/gpu.count": "4", "nvidia.com/gpu.replicas": "4"},
    )
    facts = node_facts(shared, None, {}, SPEC, now=NOW, dra=dra_counts(2))
    assert (facts.gpus, facts.advertised_twice) == (4, "")


def test_an_empty_dra_count_does_not_bound_the_agent() -> None:
    """A pool being republished counts no device until complete (pools_stable.go
    GatherPools): its node's agent, reporting the 4 GPUs it sees, is not turned Invalid."""
    bare = node("dra")  # no device-plugin capacity, no GFD label
    facts = node_facts(bare, agent(5, gpus=4), {}, SPEC, now=NOW, dra=dra_counts(0))
    assert (facts.agent, facts.gpus, facts.agent_note) == ("Reporting", 4, "")


def test_gfds_count_bounds_the_agent_above_a_short_dra_count() -> None:
    """NVIDIA's driver publishes nothing for a MIG-enabled GPU without MIG devices (nvlib.go
    GetPerGpuAllocatableDevices): 2 published, 3 seen by NVML and GFD alike."""
    labelled = node("dra", labels={"nvidia.com/gpu.count": "3"})
    facts = node_facts(labelled, agent(5, gpus=3), {}, SPEC, now=NOW, dra=dra_counts(2))
    assert (facts.agent, facts.gpus) == ("Reporting", 3)
    liar = node_facts(labelled, agent(5, gpus=8), {}, SPEC, now=NOW, dra=dra_counts(2))
    assert (liar.agent, liar.gpus) == ("Invalid", 3)
