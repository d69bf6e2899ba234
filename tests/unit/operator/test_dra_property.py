"""Property: whatever order ResourceSlice and ResourceClaim events arrive in (relists included),
the store's incremental DRA counts equal a plain recount of the objects that exist at the end.

The reference below is written from the rules, not from the operator's code: group the slices
by pool, keep each pool's newest generation; a complete pool (as many slices as each of them
says) without duplicate device names is counted, and remembered; while a pool is incomplete,
the one last remembered (after each event) is counted; a pool with duplicate names forgets it.
Mark every device a non-admin result of an allocated claim names, and count per node."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_inventory.api.models import GPUInventorySpec
from gpu_inventory.operator.accounting import ResourceCounts
from gpu_inventory.operator.aggregates import FactsCache
from gpu_inventory.operator.store import Kind, Store
from gpu_inventory.testing import dra
from gpu_inventory.testing.builders import make_node
from gpu_inventory.testing.streams import listing, watch

NOW = datetime(2026, 6, 1, tzinfo=UTC)
NODES = ("n0", "n1")
OTHER = "compute-domain.nvidia.com"
GPU = "nvidia.com/gpu"


def device(node: str, name: str, tainted: bool) -> dict[str, Any]:
    """A full GPU `gpu-<k>` or a static MIG device `mig-<parent>-<k>` (its parent GPU is never
    published whole), of a driver's own attributes."""
    if name.startswith("mig-"):
        parent = name.split("-")[1]
        body: dict[str, Any] = {
            "name": name,
            "attributes": {
                "type": {"string": "mig"},
                "uuid": {"string": f"MIG-{node}-{name}"},
                "parentUUID": {"string": f"GPU-{node}-parent-{parent}"},
                "profile": {"string": "1g.10gb" if parent == "0" else "3g.40gb"},
                "productName": {"string": dra.A100},
            },
        }
    else:
        body = {
            "name": name,
            "attributes": {
                "type": {"string": "gpu"},
                "uuid": {"string": f"GPU-{node}-{name}"},
                "productName": {"string": dra.A100},
            },
        }
    if tainted:
        body["taints"] = [{"key": "gpu.nvidia.com/xid", "value": "79", "effect": "NoSchedule"}]
    return body


DEVICE_NAMES = [*(f"gpu-{k}" for k in range(3)), *(f"mig-{p}-{k}" for p in (0, 1) for k in (0, 1))]

slices = st.builds(
    lambda node, index, driver, generation, count, names, taints: {
        "metadata": {"name": f"{node}-{driver}-{index}", "uid": f"{node}-{index}-{generation}"},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": generation, "resourceSliceCount": count},
            "devices": [device(node, n, t) for n, t in zip(names, taints, strict=False)],
        },
    },
    node=st.sampled_from(NODES),
    index=st.integers(0, 1),
    driver=st.sampled_from([dra.DRIVER, dra.DRIVER, OTHER]),
    generation=st.sampled_from([1, 1, 2, 3]),
    count=st.sampled_from([1, 1, 1, 2]),
    names=st.lists(st.sampled_from(DEVICE_NAMES), max_size=4, unique=True),
    taints=st.lists(st.booleans(), min_size=4, max_size=4),
)

claims = st.fixed_dictionaries(
    {
        "index": st.integers(0, 5),
        # Which existing slice's devices it holds (a claim on devices that exist is the
        # interesting case), or, when no slice exists, names on a node of its own.
        "slice": st.integers(0, 20),
        "devices": st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True),
        "node": st.sampled_from(NODES),
        "admin": st.sampled_from([False, False, False, True]),
        "foreign": st.sampled_from([False, False, False, True]),
        "allocated": st.sampled_from([True, True, True, False]),
    }
)


def claim_body(choice: Mapping[str, Any], present: list[dict[str, Any]]) -> dict[str, Any]:
    """The claim `choice` describes, against the slices that exist right now."""
    node, names = choice["node"], [DEVICE_NAMES[i] for i in choice["devices"]]
    if present:
        spec = present[choice["slice"] % len(present)]["spec"]
        node = spec["pool"]["name"]
        devices = [d["name"] for d in spec["devices"]] or names
        names = sorted({devices[i % len(devices)] for i in choice["devices"]})
    driver = OTHER if choice["foreign"] else dra.DRIVER
    status = {
        "allocation": dra.allocation(node, names, admin_access=choice["admin"], driver=driver)
    }
    return {
        "metadata": {
            "name": f"c{choice['index']}",
            "namespace": "ml",
            "uid": f"claim-{choice['index']}",
        },
        "status": status if choice["allocated"] else {},
    }


operations = st.lists(
    st.one_of(
        # Puts weigh more than deletes and relists, so the end state holds enough to count.
        st.tuples(st.just("slice"), slices),
        st.tuples(st.just("slice"), slices),
        st.tuples(st.just("claim"), claims),
        st.tuples(st.just("claim"), claims),
        st.tuples(st.just("claim"), claims),
        st.tuples(st.just("delete-slice"), st.integers(0, 20)),
        st.tuples(st.just("delete-claim"), st.integers(0, 20)),
        st.tuples(st.just("relist"), st.sampled_from([Kind.RESOURCE_SLICES, Kind.RESOURCE_CLAIMS])),
    ),
    min_size=4,
    max_size=40,
)


Remembered = dict[str, list[tuple[str, dict[str, Any]]]]
"""Pool name -> (node, device) of its last complete, valid generation."""


def remember(remembered: Remembered, slice_bodies: list[dict[str, Any]]) -> None:
    """After an event: what each pool's last complete generation is."""
    pools: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for body in slice_bodies:
        if body["spec"]["driver"] == dra.DRIVER:
            pools[body["spec"]["pool"]["name"]].append(body["spec"])
    for pool in set(remembered) - set(pools):
        del remembered[pool]  # every slice gone
    for pool, specs in pools.items():
        newest = max(spec["pool"]["generation"] for spec in specs)
        current = [spec for spec in specs if spec["pool"]["generation"] == newest]
        devices = [(spec["nodeName"], d) for spec in current for d in spec["devices"]]
        names = [d["name"] for _, d in devices]
        sizes = {spec["pool"]["resourceSliceCount"] for spec in current}
        if sizes != {len(current)}:
            continue  # incomplete: the last complete one stands
        if len(set(names)) != len(names):
            remembered.pop(pool, None)  # invalid: nothing counts
        else:
            remembered[pool] = devices


def reference(
    slice_bodies: list[dict[str, Any]],
    claim_bodies: list[dict[str, Any]],
    remembered: Remembered,
) -> dict[str, dict[str, tuple[int, int, int, int]]]:
    """node -> resource -> (capacity, allocatable, allocated, available), recounted plainly.
    A node appears when a GPU driver's newest slices, or the counted ones, put devices on it."""
    pools: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for body in slice_bodies:
        if body["spec"]["driver"] == dra.DRIVER:
            pools[(body["spec"]["driver"], body["spec"]["pool"]["name"])].append(body["spec"])
    taken = set()
    for body in claim_bodies:
        allocation = body["status"].get("allocation")
        for result in allocation["devices"]["results"] if allocation else ():
            if result["driver"] == dra.DRIVER and not result.get("adminAccess"):
                taken.add((result["pool"], result["device"]))
    counts: dict[str, dict[str, list[int]]] = {}
    for (_, pool), specs in pools.items():
        newest = max(spec["pool"]["generation"] for spec in specs)
        current = [spec for spec in specs if spec["pool"]["generation"] == newest]
        devices = [(spec["nodeName"], d) for spec in current for d in spec["devices"]]
        counted = remembered.get(pool, [])
        for node_name, _ in devices + counted:
            counts.setdefault(node_name, {})
        for node_name, d in counted:
            kind = d["attributes"]["type"]["string"]
            resource = (
                GPU if kind == "gpu" else "nvidia.com/mig-" + d["attributes"]["profile"]["string"]
            )
            row = counts[node_name].setdefault(resource, [0, 0, 0])
            row[0] += 1
            row[1] += 0 if d.get("taints") else 1
            row[2] += 1 if (pool, d["name"]) in taken else 0
    return {
        node_name: {r: (c, a, u, max(0, a - u)) for r, (c, a, u) in resources.items()}
        for node_name, resources in counts.items()
    }


SPEC = GPUInventorySpec()


def recompute(cache: FactsCache, store: Store) -> None:
    """What the writer does after events: recompute the nodes the store marked."""
    cache.update(
        nodes=store.nodes.live,
        gpunodes={},
        allocated=store.allocated,
        dirty=store.take_facts_dirty(),
        spec=SPEC,
        now=NOW,
        dra=store.dra_counts,
    )


def computed(cache: FactsCache) -> dict[str, dict[str, tuple[int, int, int, int]]]:
    return {
        name: {r: _tuple(c) for r, c in facts.resources.items()}
        for name, facts in cache.facts.items()
        if facts.source == "DRA"
    }


def _tuple(c: ResourceCounts) -> tuple[int, int, int, int]:
    return (c.capacity, c.allocatable, c.allocated, c.available)


def _apply(
    store: Store,
    kind: Kind,
    objects: dict[str, dict[str, Any]],
    body: Mapping[str, Any],
    epoch: int,
) -> None:
    name = body["metadata"]["name"]
    watch(store, kind, "MODIFIED" if name in objects else "ADDED", body, epoch=epoch)
    objects[name] = dict(body)


@settings(max_examples=300, deadline=None)
@given(ops=operations)
def test_incremental_counts_equal_a_plain_recount(ops: list[tuple[str, Any]]) -> None:
    store = Store()
    store.watch_dra()
    epochs = {Kind.RESOURCE_SLICES: 1, Kind.RESOURCE_CLAIMS: 1}
    for kind in (Kind.INVENTORY, Kind.GPUNODES, Kind.PODS, Kind.DEVICE_CLASSES):
        listing(store, kind, [])
    listing(store, Kind.NODES, [make_node(n) for n in NODES])
    listing(store, Kind.RESOURCE_SLICES, [])
    listing(store, Kind.RESOURCE_CLAIMS, [])
    cache = FactsCache()  # kept across events: only marked nodes are recomputed, as in the writer
    recompute(cache, store)
    objects: dict[Kind, dict[str, dict[str, Any]]] = {
        Kind.RESOURCE_SLICES: {},
        Kind.RESOURCE_CLAIMS: {},
    }
    remembered: Remembered = {}
    for op, arg in ops:
        if op == "slice":
            _apply(
                store,
                Kind.RESOURCE_SLICES,
                objects[Kind.RESOURCE_SLICES],
                arg,
                epochs[Kind.RESOURCE_SLICES],
            )
        elif op == "claim":
            body = claim_body(arg, sorted(objects[Kind.RESOURCE_SLICES].values(), key=str))
            _apply(
                store,
                Kind.RESOURCE_CLAIMS,
                objects[Kind.RESOURCE_CLAIMS],
                body,
                epochs[Kind.RESOURCE_CLAIMS],
            )
        elif op.startswith("delete"):
            kind = Kind.RESOURCE_SLICES if op == "delete-slice" else Kind.RESOURCE_CLAIMS
            present = sorted(objects[kind])
            if present:
                body = objects[kind].pop(present[arg % len(present)])
                watch(store, kind, "DELETED", body, epoch=epochs[kind])
        else:  # the watch was lost: the whole kind is listed again
            epochs[arg] += 1
            listing(store, arg, list(objects[arg].values()), epoch=epochs[arg])
        recompute(cache, store)
        remember(remembered, list(objects[Kind.RESOURCE_SLICES].values()))
    want = reference(
        list(objects[Kind.RESOURCE_SLICES].values()),
        list(objects[Kind.RESOURCE_CLAIMS].values()),
        remembered,
    )
    assert computed(cache) == want
