"""The four conditions GitOps tools read, decided from the operator's own health and the fleet's.

Pure: no I/O. Ready, Reconciling and Stalled describe the inventory's own reconciliation (what
Argo CD, Flux and kstatus act on); Degraded describes the fleet (unhealthy GPUs, NotReady
nodes, stale agents, malformed objects, and DRA GPUs the operator may not read, so the numbers
leave them out), for alerting. Reasons are stable constants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final

from gpu_inventory.api.conditions import Verdict
from gpu_inventory.api.constants import ConditionType, Reason
from gpu_inventory.operator.store import Phase

MAX_NAMES_IN_MESSAGE: Final = 5
MAX_MESSAGE: Final = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """A write the API server keeps refusing, and what kind of refusal it is."""

    what: str
    """e.g. "patch gpuinventories/status"."""
    reason: str
    """Reason.FORBIDDEN (403), Reason.TOO_LARGE, or Reason.WRITE_REFUSED (422 and others)."""
    message: str


class Refusals:
    """The writes the API server currently refuses, shared by both writers: the inventory
    shows them all as Stalled / Ready=False, whichever writer met them."""

    def __init__(self) -> None:
        self._by_what: dict[str, Refusal] = {}

    def refuse(self, refusal: Refusal) -> bool:
        """Record a refusal; whether it is new (worth an ERROR line)."""
        new = refusal.what not in self._by_what
        self._by_what[refusal.what] = refusal
        return new

    def accept(self, what: str) -> bool:
        """`what` succeeded; whether it had been refused."""
        return self._by_what.pop(what, None) is not None

    def all(self) -> tuple[Refusal, ...]:
        return tuple(self._by_what[what] for what in sorted(self._by_what))


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorHealth:
    """How the operator itself is doing; it decides Ready, Reconciling and Stalled."""

    phase: Phase = Phase.CURRENT
    waiting_for: tuple[str, ...] = ()
    """Kinds whose listing is not complete (INDEXING, RELISTING)."""
    refusals: tuple[Refusal, ...] = ()
    spec_error: str = ""
    dra_refused: tuple[str, ...] = ()
    """What RBAC does not let the operator do on DRA's kinds (`list resourceclaims`, ...) while
    the API server serves them: DRA GPUs are then missing from every number (Degraded)."""


@dataclasses.dataclass(slots=True)
class FleetProblems:
    """What is wrong in the fleet, for the Degraded condition."""

    unhealthy: dict[str, int] = dataclasses.field(default_factory=dict)
    not_ready: list[str] = dataclasses.field(default_factory=list)
    stale: list[str] = dataclasses.field(default_factory=list)
    malformed: list[str] = dataclasses.field(default_factory=list)
    """Objects left out of the totals: "pod ns/name: why" or "node name: why"."""
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    """Why a stale-listed agent was not believed (node -> note), e.g. an implausible count."""
    advertised_twice: dict[str, str] = dataclasses.field(default_factory=dict)
    """Nodes whose device plugin and DRA driver seem to offer the same GPUs (node -> why)."""
    dra_refused: tuple[str, ...] = ()
    """`OperatorHealth.dra_refused`: the numbers leave out every DRA GPU."""


def reconciliation(health: OperatorHealth) -> list[Verdict]:
    """Ready, Reconciling and Stalled."""
    return [_ready(health), _reconciling(health), _stalled(health)]


def degraded(problems: FleetProblems) -> Verdict:
    found: list[tuple[str, str]] = []
    if problems.unhealthy:
        count = sum(problems.unhealthy.values())
        found.append(
            (
                Reason.UNHEALTHY_GPUS,
                f"{_plural(count, 'unhealthy GPU')} on {names(problems.unhealthy)}",
            )
        )
    if problems.not_ready:
        found.append(
            (
                Reason.NODES_NOT_READY,
                f"{_plural(len(problems.not_ready), 'GPU node')} not Ready: "
                f"{names(problems.not_ready)}",
            )
        )
    if problems.stale:
        note = next((f" ({n}: {w})" for n, w in sorted(problems.notes.items())), "")
        found.append(
            (
                Reason.AGENTS_STALE,
                f"{_plural(len(problems.stale), 'agent')} stale, missing or invalid on "
                f"{names(problems.stale)}{note}",
            )
        )
    if problems.malformed:
        shown = "; ".join(problems.malformed[:MAX_NAMES_IN_MESSAGE])
        more = len(problems.malformed) - MAX_NAMES_IN_MESSAGE
        found.append(
            (
                Reason.MALFORMED_OBJECTS,
                f"GPU quantities left out of the totals: {shown}"
                + (f" and {more} more" if more > 0 else ""),
            )
        )
    if problems.dra_refused:
        # The operator decides whether to watch DRA once, at start-up (dra.watching.served):
        # fixing RBAC takes effect at its next start.
        found.append(
            (
                Reason.DRA_NOT_COUNTED,
                "Dynamic Resource Allocation is served, but RBAC does not let the operator "
                f"{', '.join(problems.dra_refused)}: GPUs that DRA drivers publish are not in"
                " these numbers; grant list and watch on resourceslices, resourceclaims and"
                " deviceclasses (the chart's ClusterRole) and restart the operator",
            )
        )
    if problems.advertised_twice:
        first, why = min(problems.advertised_twice.items())
        found.append(
            (
                Reason.GPUS_ADVERTISED_TWICE,
                f"GPUs advertised by both the device plugin and DRA on "
                f"{names(problems.advertised_twice)} ({first}: {why})",
            )
        )
    if not found:
        return Verdict(
            ConditionType.DEGRADED, "False", Reason.ALL_HEALTHY, "all GPU nodes are healthy"
        )
    reason = found[0][0] if len(found) == 1 else Reason.MULTIPLE_PROBLEMS
    return Verdict(ConditionType.DEGRADED, "True", reason, clip("; ".join(m for _, m in found)))


def not_known_yet() -> Verdict:
    """Degraded before the first complete listing."""
    return Verdict(
        ConditionType.DEGRADED, "Unknown", Reason.INDEXING, "not known before the first sync"
    )


def _ready(health: OperatorHealth) -> Verdict:
    phase = health.phase
    if phase is Phase.INDEXING:
        return Verdict(
            ConditionType.READY,
            "False",
            Reason.INDEXING,
            f"listing {_kinds(health)}; no numbers are published before every kind is listed",
        )
    if phase is Phase.RELISTING:
        return Verdict(
            ConditionType.READY,
            "False",
            Reason.RELISTING,
            f"the watch of {_kinds(health)} was lost; listing again, the numbers are from before",
        )
    if phase is Phase.REFRESHING:
        return Verdict(
            ConditionType.READY,
            "False",
            Reason.SPEC_CHANGED,
            "the spec changed; re-reading what it selects, the numbers are from before",
        )
    if health.refusals:
        return Verdict(
            ConditionType.READY,
            "False",
            Reason.WRITE_FAILED,
            clip("; ".join(f"{r.what}: {r.message}" for r in health.refusals)),
        )
    if health.dra_refused:
        return Verdict(
            ConditionType.READY,
            "True",
            Reason.INVENTORY_CURRENT,
            "inventory is current, without the GPUs DRA drivers publish (see Degraded)",
        )
    return Verdict(
        ConditionType.READY, "True", Reason.INVENTORY_CURRENT, "inventory is complete and current"
    )


def _reconciling(health: OperatorHealth) -> Verdict:
    reason, message = {
        Phase.INDEXING: (Reason.INITIAL_SYNC, "first listing under way"),
        Phase.RELISTING: (Reason.RELISTING, f"listing {_kinds(health)} again"),
        Phase.REFRESHING: (Reason.SPEC_CHANGED, "re-reading what the new spec selects"),
    }.get(health.phase, ("", ""))
    if reason:
        return Verdict(ConditionType.RECONCILING, "True", reason, message)
    return Verdict(
        ConditionType.RECONCILING, "False", Reason.RECONCILED, "status reflects the cluster"
    )


def _stalled(health: OperatorHealth) -> Verdict:
    for kind in (Reason.FORBIDDEN, Reason.TOO_LARGE, Reason.WRITE_REFUSED):
        refused = [r for r in health.refusals if r.reason == kind]
        if refused:
            detail = "; ".join(f"{r.what}: {r.message}" for r in refused)
            hint = {
                Reason.FORBIDDEN: "; check the operator's RBAC",
                Reason.TOO_LARGE: "; lower spec.maxNodeRows",
            }.get(kind, "")
            return Verdict(ConditionType.STALLED, "True", kind, clip(f"{detail}{hint}"))
    if health.spec_error:
        return Verdict(ConditionType.STALLED, "True", Reason.INVALID_SPEC, clip(health.spec_error))
    return Verdict(ConditionType.STALLED, "False", Reason.NOT_STALLED, "the operator is working")


def _kinds(health: OperatorHealth) -> str:
    return ", ".join(health.waiting_for) or "the cluster"


def names(items: Iterable[str]) -> str:
    """Up to five names, sorted, then how many more."""
    ordered = sorted(items)
    shown = ", ".join(ordered[:MAX_NAMES_IN_MESSAGE])
    more = len(ordered) - MAX_NAMES_IN_MESSAGE
    return f"{shown} and {more} more" if more > 0 else shown


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
