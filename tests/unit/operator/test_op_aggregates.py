"""Running totals kept node by node equal a recount from scratch, whatever the order in which
nodes appear, change and go (a property test: the incremental sums are the risky part)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_inventory.api.models import GPUInventorySpec
from gpu_inventory.operator import projections
from gpu_inventory.operator.accounting import ResourceCounts
from gpu_inventory.operator.aggregates import FactsCache, row
from gpu_inventory.operator.dra.accounting import NodeCounts
from gpu_inventory.operator.projections import DEFAULT_PROJECTOR
from gpu_inventory.testing.builders import make_gpunode, make_node

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SPEC = GPUInventorySpec()
PRODUCTS = ("Tesla-T4", "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-80GB")

node_states = st.fixed_dictionaries(
    {
        "gpus": st.integers(0, 8),
        "mig": st.integers(0, 7),
        "product": st.sampled_from(PRODUCTS),
        "ready": st.booleans(),
        "allocated": st.integers(0, 10),
        "agent": st.sampled_from(["none", "fresh", "stale", "unhealthy"]),
        "dra": st.integers(-1, 4),
    }
)
steps = st.lists(st.tuples(st.integers(0, 5), st.one_of(st.none(), node_states)), max_size=40)


def project(name: str, state: dict[str, object]) -> tuple[object, object, dict[str, int]]:
    resources = {"nvidia.com/mig-1g.10gb": str(state["mig"])} if state["mig"] else {}
    body = make_node(
        name,
        gpus=int(str(state["gpus"])),
        product=str(state["product"]),
        resources=resources,
        ready=bool(state["ready"]),
    )
    body["metadata"]["creationTimestamp"] = (NOW - timedelta(days=1)).isoformat()
    node = projections.project_node(body, DEFAULT_PROJECTOR)
    gpunode = None
    if state["agent"] != "none":
        age = 3600 if state["agent"] == "stale" else 5
        unhealthy = 1 if state["agent"] == "unhealthy" and state["gpus"] else 0
        beat = (NOW - timedelta(seconds=age)).isoformat()
        gpunode = projections.project_gpunode(
            make_gpunode(name, gpus=int(str(state["gpus"])), unhealthy=unhealthy, heartbeat=beat)
        )
    allocated = {"nvidia.com/gpu": int(str(state["allocated"]))} if state["allocated"] else {}
    return node, gpunode, allocated


def dra_counts(gpus: int) -> NodeCounts | None:
    """-1: not a DRA node; else a driver publishing `gpus` GPUs, one of them allocated."""
    if gpus < 0:
        return None
    held = min(gpus, 1)
    counts = {"nvidia.com/gpu": ResourceCounts(gpus, gpus, held, gpus - held)} if gpus else {}
    return NodeCounts(counts, gpus, 0, PRODUCTS[2])


def recount(cache: FactsCache) -> dict[str, object]:
    """The totals from scratch, the plain way: one loop over every node's facts."""
    facts = list(cache.facts.values())
    resources: dict[tuple[str, str], list[int]] = {}
    products: dict[str, list[int]] = {}
    for f in facts:
        for source, counts in f.by_source:
            for name, c in counts.items():
                acc = resources.setdefault((name, source), [0, 0, 0, 0])
                for i, value in enumerate((c.capacity, c.allocatable, c.allocated, c.available)):
                    acc[i] += value
        p = products.setdefault(f.product, [0, 0, 0, 0, 0])
        for i, value in enumerate(
            (1, f.gpus, f.primary.allocatable, f.primary.allocated, f.primary.available)
        ):
            p[i] += value
    return {
        "nodes": len(facts),
        "ready_nodes": sum(f.ready for f in facts),
        "gpus": sum(f.gpus for f in facts),
        "unhealthy_gpus": sum(f.unhealthy for f in facts),
        "resources": {k: v for k, v in resources.items() if any(v)},
        "products": products,
        "unhealthy": {f.name: f.unhealthy for f in facts if f.unhealthy},
        "not_ready": {f.name for f in facts if not f.ready},
        "stale": {f.name for f in facts if f.agent_problem},
        "malformed": {f.name: f.malformed for f in facts if f.malformed},
        "notes": {f.name: f.agent_note for f in facts if f.agent_note},
        "advertised_twice": {f.name: f.advertised_twice for f in facts if f.advertised_twice},
        "attention": {f.name for f in facts if f.needs_attention},
        "rows": {f.name: row(f) for f in facts},
    }


@settings(max_examples=150, deadline=None)
@given(steps)
def test_running_totals_equal_a_recount(
    history: list[tuple[int, dict[str, object] | None]],
) -> None:
    cache = FactsCache()
    nodes: dict[str, object] = {}
    gpunodes: dict[str, object] = {}
    allocated: dict[str, dict[str, int]] = {}
    dra: dict[str, NodeCounts | None] = {}
    for index, state in history:
        name = f"n{index}"
        if state is None:
            nodes.pop(name, None)
            gpunodes.pop(name, None)
            allocated.pop(name, None)
            dra.pop(name, None)
        else:
            node, gpunode, sums = project(name, state)
            nodes[name] = node
            if gpunode is None:
                gpunodes.pop(name, None)
            else:
                gpunodes[name] = gpunode
            allocated[name] = sums
            dra[name] = dra_counts(int(str(state["dra"])))
        cache.update(
            nodes=nodes,  # type: ignore[arg-type]
            gpunodes=gpunodes,  # type: ignore[arg-type]
            allocated=allocated,
            dirty={name},
            spec=SPEC,
            now=NOW,
            dra=dra.get,
        )
    assert vars(cache.totals) == recount(cache)
