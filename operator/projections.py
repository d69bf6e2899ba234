"""API bodies -> the small frozen values the operator keeps: one per pod, node, GPUNode, inventory.

Pure: no I/O. Bodies are never kept (a Node with managedFields easily exceeds 15 kB; 100,000
pods would not fit). Quantities are parsed here, once per event, with the accounting module.

Two choices keep projections valid when the GPUInventory spec changes at run time:
- pods and nodes keep *every* extended resource (names with a domain, outside kubernetes.io),
  not only the spec's `resourceNames`; status computation filters. A change of resourceNames
  therefore needs no re-listing. The price: a pod with an absurd quantity of any extended
  resource is skipped whole (the API server admits no malformed quantities, so only absurd
  ones, above `accounting.MAX_COUNT`, can reach us, and such a pod is broken anyway).
- node labels are filtered by the spec's `labelPrefixes` (`LabelFilter`); the store re-filters
  or re-lists when they change (see `store.Projections.set_label_filter`).
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
    GPUInventorySpec,
    GPUInventoryStatus,
    GPUNodeStatus,
    KubernetesView,
)
from gpu_inventory.operator import accounting

Pairs = tuple[tuple[str, int], ...]
"""A small sorted mapping as a tuple: a third of a dict's memory for one or two entries."""

_EMPTY: Final[Mapping[str, Any]] = {}
_intern = sys.intern


class ProjectionError(ValueError):
    """An object the operator cannot account for; the message names the object and why."""


class _ExtendedResources(accounting.ResourceMatcher):
    """Every extended resource: a name with a domain outside kubernetes.io (`vendor.com/x`).

    cpu, memory, hugepages-* and ephemeral-storage have no domain and are never parsed.
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(())

    def matches(self, name: str) -> bool:
        domain, slash, _ = name.partition("/")
        return bool(slash) and not domain.endswith("kubernetes.io")


EXTENDED_RESOURCES: Final = _ExtendedResources()


def pairs(mapping: Mapping[str, int]) -> Pairs:
    """A mapping as sorted, interned pairs with the zeros left out."""
    return tuple(sorted((_intern(k), v) for k, v in mapping.items() if v))


def _name(body: Mapping[str, Any]) -> str:
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


# --- Pods ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PodProjection:
    """What the scheduler counts of one pod: its node, whether it counts, its GPU requests."""

    node: str
    counted: bool
    requests: Pairs

    @property
    def occupies(self) -> bool:
        """Whether this pod adds anything to a node's allocated sums."""
        return self.counted and bool(self.requests)


def pod_key(body: Mapping[str, Any]) -> str:
    """The store key of a pod: its uid, so a pod re-created under the same name never collides
    with the DELETED event of its predecessor (kopf handles each uid in its own task)."""
    meta = body.get("metadata") or _EMPTY
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


def project_pod(body: Mapping[str, Any]) -> PodProjection:
    """Project a Pod; raises ProjectionError naming the pod, container and resource."""
    try:
        requests = accounting.pod_requests(body, EXTENDED_RESOURCES)
    except accounting.QuantityError as error:
        raise ProjectionError(f"pod {_name(body)} skipped: {error}") from error
    node = (body.get("spec") or _EMPTY).get("nodeName") or ""
    return PodProjection(
        node=_intern(node), counted=accounting.pod_counts(body), requests=pairs(requests)
    )


# --- Nodes --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class LabelFilter:
    """Which node labels are GPU-relevant: keys starting with one of `prefixes`."""

    prefixes: tuple[str, ...] = tuple(constants.DEFAULT_LABEL_PREFIXES)

    def keep(self, key: str) -> bool:
        return key.startswith(self.prefixes)

    def narrows(self, previous: LabelFilter) -> bool:
        """Whether every label this filter keeps was also kept by `previous`."""
        return all(any(p.startswith(q) for q in previous.prefixes) for p in self.prefixes)


@dataclasses.dataclass(frozen=True, slots=True)
class NodeProjection:
    """A Node's GPU-relevant part: filtered labels, condition bools, extended resources."""

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

    def has_capacity(self, matcher: accounting.ResourceMatcher) -> bool:
        """A GPU node: some resource the spec counts as a GPU has capacity."""
        return any(count > 0 and matcher.matches(name) for name, count in self.capacity)

    @property
    def ready(self) -> bool:
        return dict(self.conditions).get("Ready", False)


def project_node(body: Mapping[str, Any], labels: LabelFilter) -> NodeProjection:
    """Project a Node; a Node without labels or status is valid (it is simply not a GPU node).

    Raises ProjectionError for a quantity that cannot be a GPU count, naming the node.
    """
    meta = body.get("metadata") or _EMPTY
    status = body.get("status") or _EMPTY
    all_labels: Mapping[str, str] = meta.get("labels") or _EMPTY
    try:
        capacity = _extended(status.get("capacity") or _EMPTY)
        allocatable = _extended(status.get("allocatable") or _EMPTY)
    except accounting.QuantityError as error:
        raise ProjectionError(f"node {_name(body)} skipped: {error}") from error
    conditions = tuple(
        sorted(
            (_intern(str(c.get("type"))), c.get("status") == "True")
            for c in status.get("conditions") or ()
            if isinstance(c, Mapping) and c.get("type") in constants.NODE_CONDITION_TYPES
        )
    )
    return NodeProjection(
        name=_intern(str(meta.get("name", ""))),
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        labels=tuple(
            sorted((_intern(k), _intern(str(v))) for k, v in all_labels.items() if labels.keep(k))
        ),
        conditions=conditions,
        capacity=capacity,
        allocatable=allocatable,
        product=_intern(str(all_labels.get(constants.PRODUCT_LABEL, ""))),
        gpu_count=_label_count(all_labels.get(constants.GPU_COUNT_LABEL)),
        created=_time(meta.get("creationTimestamp")),
    )


def _extended(resources: Mapping[str, Any]) -> Pairs:
    return pairs(
        {
            name: accounting.parse_count(value)
            for name, value in resources.items()
            if EXTENDED_RESOURCES.matches(name)
        }
    )


def _label_count(value: object) -> int | None:
    """`nvidia.com/gpu.count` is a hint, not a quantity: anything but a small integer is None."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 6:
        return int(value)
    return None


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


def label_filter(spec: GPUInventorySpec) -> LabelFilter:
    return LabelFilter(tuple(spec.label_prefixes))
