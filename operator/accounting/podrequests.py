"""Effective GPU requests of a pod, exactly as kube-scheduler and `kubectl describe node` count.

Pure: no I/O. Mirrors `PodRequests` in k8s.io/component-helpers/resource/helpers.go (KEP-753
sidecars): regular containers and restartable init containers (sidecars) run together, while
each regular init container runs alone beside the sidecars declared before it; the pod needs
the larger of the two, plus `spec.overhead`. Only the GPU resource names are computed: pod-level
`spec.resources` never applies to extended resources, and in-place resize never changes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from gpu_inventory.operator.accounting import quantities

_Matcher = Callable[[str], bool]
_Owner = Mapping[str, Any] | str  # a container, or where in the pod spec the quantity sits

_TERMINAL_PHASES: Final = frozenset({"Succeeded", "Failed"})
_EMPTY: Final[Mapping[str, Any]] = {}

MAX_CACHED_NAMES: Final = 4096
"""A cluster has a few dozen resource names; the bound stops hostile names growing the cache."""


class ResourceMatcher:
    """Which extended resource names count as GPUs; a trailing `*` is a prefix wildcard.

    Frozen (the patterns never change after construction, so the cache never goes stale) and
    cached, because `matches` runs for every resource of every container of every pod event.
    """

    __slots__ = ("_cache", "_exact", "_prefixes", "patterns")

    patterns: tuple[str, ...]
    _exact: frozenset[str]
    _prefixes: tuple[str, ...]
    _cache: dict[str, bool]

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = tuple(patterns)
        for pattern in patterns:
            _check_pattern(pattern)
        set_ = object.__setattr__
        set_(self, "patterns", patterns)
        set_(self, "_exact", frozenset(p for p in patterns if not p.endswith("*")))
        set_(self, "_prefixes", tuple(p[:-1] for p in patterns if p.endswith("*")))
        set_(self, "_cache", {})

    def matches(self, name: str) -> bool:
        """Whether `name` (e.g. `nvidia.com/mig-1g.10gb`) is one of the GPU resources."""
        found = self._cache.get(name)
        if found is None:
            found = name in self._exact or name.startswith(self._prefixes)
            if len(self._cache) < MAX_CACHED_NAMES:
                self._cache[name] = found
        return found

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ResourceMatcher is frozen; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ResourceMatcher is frozen; cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceMatcher):
            return NotImplemented
        return self.patterns == other.patterns

    def __hash__(self) -> int:
        return hash(self.patterns)

    def __repr__(self) -> str:
        return f"ResourceMatcher({list(self.patterns)!r})"


def _check_pattern(pattern: str) -> None:
    if not isinstance(pattern, str) or not pattern.rstrip("*"):
        raise ValueError(
            f"resource name pattern {pattern!r} must be a non-empty name, optionally ending in"
            " '*' (a bare '*' would count cpu and memory as GPUs)"
        )
    if "*" in pattern[:-1]:
        raise ValueError(f"resource name pattern {pattern!r}: '*' is only allowed at the end")


def pod_counts(pod: Mapping[str, Any]) -> bool:
    """Whether a pod occupies its node's resources, by the scheduler's rule.

    Bound (`spec.nodeName`) and not terminal. Terminating pods (deletionTimestamp set) still
    count: the scheduler keeps their resources until they are gone or reach a terminal phase.
    """
    spec = pod.get("spec") or _EMPTY
    if not spec.get("nodeName"):
        return False
    status = pod.get("status") or _EMPTY
    return status.get("phase") not in _TERMINAL_PHASES


@dataclasses.dataclass(frozen=True, slots=True)
class PodRequests:
    """A pod's effective GPU requests, and the GPU resources whose quantities cannot be read."""

    counts: dict[str, int]
    """Resource name -> effective request (zeros left out), for the well-formed resources."""
    malformed: dict[str, str]
    """Resource name -> why it was left out (container and reason). A malformed quantity
    skips that one resource of that one pod, never the pod: its other GPUs still count, and
    the skipped one is reported, never a silent zero in a total."""


def pod_requests(pod: Mapping[str, Any], resource_names: ResourceMatcher) -> PodRequests:
    """Effective requests of `pod` (a raw API dict) for the resources `resource_names` selects.

    Only selected names are parsed: SGX EPC in bytes, hugepages, RDMA devices or storage are
    never looked at, whatever their value.
    """
    spec = pod.get("spec") or _EMPTY
    reader = _Reader(resource_names.matches)
    steady: dict[str, int] = {}  # containers + sidecars, all running after init
    for container in spec.get("containers") or ():
        _add(steady, reader.container(container))
    init_peak = _init_peak(spec.get("initContainers") or (), steady, reader)
    for name, count in init_peak.items():
        if count > steady.get(name, 0):
            steady[name] = count
    overhead = spec.get("overhead")
    if overhead:
        _add(steady, reader.counts(overhead, "spec.overhead"))
    counts = {
        name: count for name, count in steady.items() if count and name not in reader.malformed
    }
    return PodRequests(counts=counts, malformed=reader.malformed)


def _init_peak(
    init_containers: Iterable[Mapping[str, Any]],
    steady: dict[str, int],
    reader: _Reader,
) -> dict[str, int]:
    """Largest footprint while regular init containers run; adds sidecars to `steady`.

    A sidecar's own init-time footprint (the sidecars so far) is left out: requests are never
    negative, so it can never exceed the steady state, which contains every sidecar.
    """
    peak: dict[str, int] = {}
    sidecars: dict[str, int] = {}
    for container in init_containers:
        requests = reader.container(container)
        if not requests:
            continue
        if container.get("restartPolicy") == "Always":
            _add(steady, requests)
            _add(sidecars, requests)
            continue
        for name, count in requests.items():
            footprint = count + sidecars.get(name, 0)
            if footprint > peak.get(name, 0):
                peak[name] = footprint
    return peak


class _Reader:
    """Reads the selected quantities of one pod, noting (not raising) the malformed ones."""

    __slots__ = ("malformed", "matches")

    def __init__(self, matches: _Matcher) -> None:
        self.matches = matches
        self.malformed: dict[str, str] = {}

    def container(self, container: Mapping[str, Any]) -> Mapping[str, int]:
        """GPU requests of one container; a limit stands in for a missing request.

        That is what API defaulting does, so objects built by hand (tests, builders) count the
        same as objects read back from the API server.
        """
        resources = container.get("resources")
        if not resources:
            return _EMPTY
        requests = resources.get("requests") or _EMPTY
        limits = resources.get("limits") or _EMPTY
        counts = self.counts(requests, container) if requests else {}
        for name, value in limits.items():
            if name not in requests and self.matches(name):
                self._read(counts, name, value, container)
        return counts

    def counts(self, values: Mapping[str, Any], owner: _Owner) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, value in values.items():
            if self.matches(name):
                self._read(counts, name, value, owner)
        return counts

    def _read(self, into: dict[str, int], name: str, value: Any, owner: _Owner) -> None:
        try:
            into[name] = quantities.parse_count(value)
        except quantities.QuantityError as error:
            # The message is built only here: formatting it for every container would cost
            # more than parsing the quantity.
            where = owner if isinstance(owner, str) else f"container {owner.get('name')!r}"
            self.malformed.setdefault(name, f"{where}, resource {name}: {error}")


def _add(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for name, count in counts.items():
        into[name] = into.get(name, 0) + count
