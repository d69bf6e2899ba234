"""API bodies -> the small frozen values the operator keeps: one per pod, node, GPUNode, inventory.

Pure: no I/O. Bodies are never kept (a Node with managedFields easily exceeds 15 kB; 150,000
pods would not fit). Quantities are parsed here, once per event, and only for the resource
names the GPUInventory spec selects (`Projector`): SGX EPC in bytes, hugepages, RDMA devices
or storage are never read, whatever their value. A GPU quantity that cannot be read leaves out
that one resource of that one object and is remembered (`malformed`), so the status can count
it; it never becomes a silent zero.

Projections therefore depend on the spec: when `resourceNames` or `labelPrefixes` change, the
kinds they shape are read again (`refresh`), under the new `Projector`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import pydantic

from gpu_inventory.api import constants, errors
from gpu_inventory.api.models import (
    MAX_NODE_CONDITIONS,
    GPUInventorySpec,
    GPUInventoryStatus,
    GPUNodeStatus,
    KubernetesView,
)
from gpu_inventory.operator import accounting
from gpu_inventory.operator.dra import projections as dra_projections

Pairs = tuple[tuple[str, int], ...]
"""A small sorted mapping as a tuple: a third of a dict's memory for one or two entries."""

Malformed = tuple[str, ...]
"""Why GPU resources of an object were left out: one line per resource."""

_EMPTY: Final[Mapping[str, Any]] = {}
_intern = sys.intern


def pairs(mapping: Mapping[str, int]) -> Pairs:
    """A mapping as sorted, interned pairs with the zeros left out."""
    return tuple(sorted((_intern(k), v) for k, v in mapping.items() if v))


def object_name(body: Mapping[str, Any]) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects."""
    meta = body.get("metadata") or _EMPTY
    namespace = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{namespace}/{name}" if namespace else str(name)


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# --- what the spec selects ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class LabelFilter:
    """Which node labels are GPU-relevant: keys starting with one of `prefixes`."""

    prefixes: tuple[str, ...] = tuple(constants.DEFAULT_LABEL_PREFIXES)

    def keep(self, key: str) -> bool:
        return key.startswith(self.prefixes)


@dataclasses.dataclass(frozen=True, slots=True)
class Projector:
    """How bodies become projections under one spec: which resources count, which labels."""

    matcher: accounting.ResourceMatcher
    labels: LabelFilter
    drivers: frozenset[str] = frozenset(constants.DEFAULT_DRA_DRIVERS)
    """DRA drivers whose ResourceSlices and ResourceClaims are kept (`spec.draDrivers`)."""

    @classmethod
    def for_spec(cls, spec: GPUInventorySpec) -> Projector:
        return cls(
            matcher=accounting.ResourceMatcher(spec.resource_names),
            labels=LabelFilter(tuple(spec.label_prefixes)),
            drivers=frozenset(spec.dra_drivers),
        )


DEFAULT_PROJECTOR: Final = Projector.for_spec(GPUInventorySpec())


# --- Pods ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PodProjection:
    """What the scheduler counts of one bound, unfinished pod: its node and its GPU requests."""

    node: str
    requests: Pairs
    malformed: Malformed = ()
    """GPU resources of this pod left out because their quantity cannot be read."""


def pod_key(body: Mapping[str, Any]) -> str:
    """The store key of a pod: its uid, so a pod re-created under the same name never collides
    with the DELETED event of its predecessor (kopf handles each uid in its own task)."""
    meta = body.get("metadata") or _EMPTY
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


def project_pod(
    body: Mapping[str, Any], matcher: accounting.ResourceMatcher
) -> PodProjection | None:
    """Project a Pod; None when it holds no GPU on any node (most pods), so it is not kept."""
    if not accounting.pod_counts(body):
        return None
    found = accounting.pod_requests(body, matcher)
    if served := dra_projections.served_by_dra(body):  # counted through its DRA claim
        found = accounting.PodRequests(
            {n: c for n, c in found.counts.items() if n not in served},
            {n: why for n, why in found.malformed.items() if n not in served},
        )
    if not found.counts and not found.malformed:
        return None
    node = (body.get("spec") or _EMPTY).get("nodeName") or ""
    name = object_name(body)
    return PodProjection(
        node=_intern(node),
        requests=pairs(found.counts),
        malformed=tuple(f"pod {name}: {why}" for why in found.malformed.values()),
    )


# --- Nodes --------------------------------------------------------------------------------------

_BUILT_IN_CONDITIONS: Final = frozenset(constants.NODE_CONDITION_TYPES)


@dataclasses.dataclass(frozen=True, slots=True)
class NodeProjection:
    """A Node's GPU-relevant part: filtered labels, every condition, selected resources."""

    name: str
    uid: str
    resource_version: str = dataclasses.field(compare=False)
    """Not content: a Node whose GPU-relevant part is unchanged compares equal."""
    labels: tuple[tuple[str, str], ...]
    conditions: tuple[tuple[str, bool], ...]
    capacity: Pairs
    allocatable: Pairs
    product: str
    gpu_count: int | None
    created: datetime | None
    malformed: Malformed = ()
    """GPU resources of this node left out because their quantity cannot be read."""
    device_units: int = 0
    """Units of every `nvidia.com/` resource the node advertises, whatever the spec selects:
    every physical GPU is at least one (a GPU, a MIG device or a shared replica)."""

    @property
    def has_gpus(self) -> bool:
        """A GPU node: some selected resource has capacity (or could not be read)."""
        return any(count > 0 for _, count in self.capacity) or bool(self.malformed)

    @property
    def ready(self) -> bool:
        return dict(self.conditions).get("Ready", False)


def project_node(body: Mapping[str, Any], projector: Projector) -> NodeProjection:
    """Project a Node; a Node without labels or status is valid (it is simply not a GPU node)."""
    meta = body.get("metadata") or _EMPTY
    status = body.get("status") or _EMPTY
    all_labels: Mapping[str, str] = meta.get("labels") or _EMPTY
    name = _intern(str(meta.get("name", "")))
    malformed: dict[str, str] = {}
    capacity = _selected(status.get("capacity"), projector.matcher, malformed, name, "capacity")
    allocatable = _selected(
        status.get("allocatable"), projector.matcher, malformed, name, "allocatable"
    )
    labels = projector.labels
    return NodeProjection(
        name=name,
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        labels=tuple(
            sorted((_intern(k), _intern(str(v))) for k, v in all_labels.items() if labels.keep(k))
        ),
        conditions=node_conditions(status.get("conditions")),
        capacity=tuple((n, c) for n, c in capacity if n not in malformed),
        allocatable=tuple((n, c) for n, c in allocatable if n not in malformed),
        product=_intern(str(all_labels.get(constants.PRODUCT_LABEL, ""))),
        gpu_count=_physical_count(all_labels),
        created=_time(meta.get("creationTimestamp")),
        malformed=tuple(malformed.values()),
        device_units=_device_units(status.get("capacity")),
    )


def node_conditions(raw: object) -> tuple[tuple[str, bool], ...]:
    """Every condition on the Node as (type, status is True), the built-in ones first.

    Node Problem Detector and GPU health tools add their own conditions; all are kept, up to
    `MAX_NODE_CONDITIONS` (built-ins first, then by name), so the bound holds against a Node that
    carries hundreds.
    """
    found: dict[str, bool] = {}
    for condition in raw if isinstance(raw, list) else ():
        if isinstance(condition, Mapping):
            kind = condition.get("type")
            if isinstance(kind, str) and kind and len(kind) <= 64:
                found[_intern(kind)] = condition.get("status") == "True"
    ordered = sorted(found.items(), key=lambda item: (item[0] not in _BUILT_IN_CONDITIONS, item))
    return tuple(ordered[:MAX_NODE_CONDITIONS])


def _selected(
    resources: object,
    matcher: accounting.ResourceMatcher,
    malformed: dict[str, str],
    node: str,
    field: str,
) -> Pairs:
    """The selected resources of `status.<field>`; unreadable ones go to `malformed`."""
    counts: dict[str, int] = {}
    for name, value in (resources if isinstance(resources, Mapping) else _EMPTY).items():
        if not matcher.matches(name):
            continue
        try:
            counts[name] = accounting.parse_count(value)
        except accounting.QuantityError as error:
            malformed.setdefault(name, f"node {node}: status.{field}, resource {name}: {error}")
    return pairs(counts)


def _physical_count(labels: Mapping[str, str]) -> int | None:
    """Physical GPUs by GPU Feature Discovery's `nvidia.com/gpu.count`, a hint, not a quantity:
    anything but a small integer is None. Under the single MIG strategy GFD overrides it with
    the number of MIG devices (its README: "nvidia.com/gpu.count (overridden) | Number of MIG
    devices"), so it says nothing of physical GPUs there."""
    if labels.get(constants.MIG_STRATEGY_LABEL) == "single":
        return None
    value = labels.get(constants.GPU_COUNT_LABEL)
    if isinstance(value, str) and value.isdigit() and len(value) <= 6:
        return int(value)
    return None


def _device_units(capacity: object) -> int:
    """Sum of every readable `nvidia.com/` capacity (unreadable ones count nothing here)."""
    total = 0
    for name, value in (capacity if isinstance(capacity, Mapping) else _EMPTY).items():
        if name.startswith("nvidia.com/"):
            try:
                total += accounting.parse_count(value)
            except accounting.QuantityError:
                continue
    return total


# --- GPUNodes -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AgentReport:
    """What the node agent last reported, reduced to what rows and conditions need."""

    heartbeat: datetime | None
    nvml_available: bool
    pod_name: str
    gpus: int
    unhealthy: int
    product: str


@dataclasses.dataclass(frozen=True, slots=True)
class GPUNodeProjection:
    """A GPUNode: the agent's report (or why it is unusable) and our `status.kubernetes`."""

    name: str
    uid: str
    resource_version: str = dataclasses.field(compare=False)
    """Not content; the writer's patches are conditional on it."""
    agent: AgentReport | None
    """None when the agent has written nothing yet, or wrote something unusable."""
    agent_error: str
    """Why the agent's data was ignored; empty when it was usable or absent."""
    kubernetes: Mapping[str, Any] | None
    """`status.kubernetes` as the server has it, normalised to wire form (None: absent/invalid)."""


def project_gpunode(body: Mapping[str, Any]) -> GPUNodeProjection:
    """Project a GPUNode; a broken agent's content is recorded as `agent_error`, never raised."""
    meta = body.get("metadata") or _EMPTY
    raw_status = body.get("status")
    status = raw_status if isinstance(raw_status, Mapping) else _EMPTY
    agent: AgentReport | None = None
    agent_error = ""
    agent_part = {k: v for k, v in status.items() if k != "kubernetes"}
    if agent_part.get("agent") is not None:
        try:
            parsed = GPUNodeStatus.model_validate(agent_part)
        except pydantic.ValidationError as error:
            agent_error = errors.validation_summary(error, limit=3)
        else:
            agent = _agent_report(parsed)
    return GPUNodeProjection(
        name=_intern(str(meta.get("name", ""))),
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        agent=agent,
        agent_error=agent_error,
        kubernetes=_kubernetes_view(status.get("kubernetes")),
    )


def _agent_report(status: GPUNodeStatus) -> AgentReport:
    assert status.agent is not None
    summary = status.summary
    if summary is not None:
        gpus, unhealthy, product = summary.gpus, summary.unhealthy, summary.product
    else:
        gpus = len(status.gpus)
        unhealthy = sum(1 for gpu in status.gpus if gpu.health.status == "Unhealthy")
        product = status.gpus[0].name if status.gpus else ""
    return AgentReport(
        heartbeat=status.agent.heartbeat_time,
        nvml_available=status.agent.nvml_available,
        pod_name=status.agent.pod_name,
        gpus=gpus,
        unhealthy=min(unhealthy, gpus) if gpus else unhealthy,
        product=_intern(product),
    )


def _kubernetes_view(raw: object) -> Mapping[str, Any] | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        return KubernetesView.model_validate(raw).to_wire()
    except pydantic.ValidationError:
        return None


# --- The GPUInventory ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class InventoryProjection:
    """The `cluster` GPUInventory: its spec (validated), generation and current status."""

    uid: str
    generation: int | None
    resource_version: str
    spec: GPUInventorySpec
    spec_error: str
    """Why the spec was refused (defaults are used instead); empty when it is valid."""
    status: GPUInventoryStatus | None
    status_wire: Mapping[str, Any] | None
    """The current status normalised to wire form, to compare with the desired one."""


def project_inventory(body: Mapping[str, Any]) -> InventoryProjection:
    """Project the GPUInventory; an unusable spec falls back to defaults with the reason kept."""
    meta = body.get("metadata") or _EMPTY
    spec, spec_error = read_spec(body.get("spec") or {})
    status: GPUInventoryStatus | None = None
    raw_status = body.get("status")
    if isinstance(raw_status, Mapping) and raw_status:
        try:
            status = GPUInventoryStatus.model_validate(raw_status)
        except pydantic.ValidationError:
            status = None  # ours to overwrite; conditions restart their transition times
    generation = meta.get("generation")
    return InventoryProjection(
        uid=str(meta.get("uid", "")),
        generation=generation if isinstance(generation, int) else None,
        resource_version=str(meta.get("resourceVersion", "")),
        spec=spec,
        spec_error=spec_error,
        status=status,
        status_wire=status.to_wire() if status is not None else None,
    )


def read_spec(raw: Mapping[str, Any]) -> tuple[GPUInventorySpec, str]:
    """The spec, or the defaults and why the spec was refused."""
    try:
        spec = GPUInventorySpec.model_validate(dict(raw))
        accounting.ResourceMatcher(spec.resource_names)
    except pydantic.ValidationError as error:
        return (
            GPUInventorySpec(),
            f"spec refused, defaults used: {errors.validation_summary(error, limit=3)}",
        )
    except ValueError as error:
        return GPUInventorySpec(), f"spec refused, defaults used: {error}"
    return spec, ""
