"""A pod's GPU requests and whether it counts, as kube-scheduler and `kubectl describe node` see.

Pods are raw API dicts (camelCase), the shape the operator receives from a watch.
"""

from __future__ import annotations

from typing import Any

import pytest

from gpu_inventory.operator.accounting import (
    ResourceMatcher,
    pod_counts,
    pod_requests,
    podrequests,
)

GPU = "nvidia.com/gpu"
SHARED = "nvidia.com/gpu.shared"
MIG_1G = "nvidia.com/mig-1g.10gb"
MIG_3G = "nvidia.com/mig-3g.40gb"
GPUS = ResourceMatcher([GPU, SHARED, "nvidia.com/mig-*"])


def ctr(
    name: str = "c",
    *,
    requests: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    sidecar: bool = False,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": "busybox"}
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    if resources:
        container["resources"] = resources
    if sidecar:
        container["restartPolicy"] = "Always"
    return container


def gpu(n: int | str, name: str = "c", *, sidecar: bool = False) -> dict[str, Any]:
    """A container asking for `n` GPUs the way manifests do: limits only."""
    return ctr(name, limits={GPU: str(n)}, sidecar=sidecar)


def pod(
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    overhead: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": "n1", "containers": containers or []}
    if init is not None:
        spec["initContainers"] = init
    if overhead is not None:
        spec["overhead"] = overhead
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}


REQUESTS = [
    ("no-containers", pod([]), {}),
    ("no-resources", pod([ctr()]), {}),
    ("empty-resources", pod([{"name": "c", "resources": {}}]), {}),
    ("null-requests-and-limits", pod([{"name": "c", "resources": {"requests": None}}]), {}),
    ("no-spec", {"metadata": {"name": "p"}}, {}),
    ("null-spec", {"spec": None}, {}),
    ("empty-dict", {}, {}),
    ("limits-only", pod([gpu(2)]), {GPU: 2}),
    ("requests-only", pod([ctr(requests={GPU: "2"})]), {GPU: 2}),
    ("request-and-limit-equal", pod([ctr(requests={GPU: "2"}, limits={GPU: "2"})]), {GPU: 2}),
    # The API server rejects request != limit for extended resources; the request is what counts.
    ("request-wins-over-limit", pod([ctr(requests={GPU: "1"}, limits={GPU: "3"})]), {GPU: 1}),
    (
        "fallback-is-per-resource",
        pod([ctr(requests={GPU: "1"}, limits={GPU: "1", SHARED: "2"})]),
        {GPU: 1, SHARED: 2},
    ),
    ("explicit-zero-request-wins", pod([ctr(requests={GPU: "0"}, limits={GPU: "1"})]), {}),
    ("zero-is-dropped", pod([gpu(0)]), {}),
    ("containers-sum", pod([gpu(1, "a"), gpu(2, "b")]), {GPU: 3}),
    ("int-quantity", pod([ctr(limits={GPU: 2})]), {GPU: 2}),
    ("canonical-forms", pod([ctr(limits={GPU: "1000m"}), ctr(limits={GPU: "1e1"})]), {GPU: 11}),
    (
        "non-gpu-ignored",
        pod([ctr(requests={"cpu": "500m", "memory": "1Gi"}, limits={"example.com/fpga": "1"})]),
        {},
    ),
    (
        "non-gpu-fractions-never-parsed",
        pod([ctr(requests={"cpu": "0.5", "memory": "garbage"}, limits={GPU: "1"})]),
        {GPU: 1},
    ),
    ("mig-by-wildcard", pod([ctr(limits={MIG_1G: "2", MIG_3G: "1"})]), {MIG_1G: 2, MIG_3G: 1}),
    (
        "mig-and-shared-summed-separately",
        pod([ctr("a", limits={MIG_1G: "1", SHARED: "1"}), ctr("b", limits={MIG_1G: "1"})]),
        {MIG_1G: 2, SHARED: 1},
    ),
    ("main-1-regular-init-1", pod([gpu(1)], init=[gpu(1, "init")]), {GPU: 1}),
    ("main-1-sidecar-1", pod([gpu(1)], init=[gpu(1, "side", sidecar=True)]), {GPU: 2}),
    (
        "sidecar-1-before-regular-init-2-main-0",
        pod([ctr()], init=[gpu(1, "side", sidecar=True), gpu(2, "init")]),
        {GPU: 3},
    ),
    (
        "sidecar-after-regular-init-not-added-to-it",
        pod([ctr()], init=[gpu(2, "init"), gpu(1, "side", sidecar=True)]),
        {GPU: 2},
    ),
    (
        "regular-init-larger-than-main",
        pod([gpu(1)], init=[gpu(4, "init")]),
        {GPU: 4},
    ),
    (
        "regular-inits-take-max-not-sum",
        pod([gpu(1)], init=[gpu(2, "i1"), gpu(3, "i2"), gpu(1, "i3")]),
        {GPU: 3},
    ),
    (
        "sidecars-accumulate-before-each-init",
        pod(
            [gpu(1)],
            init=[
                gpu(1, "s1", sidecar=True),
                gpu(1, "i1"),
                gpu(2, "s2", sidecar=True),
                gpu(2, "i2"),
            ],
        ),
        # i1: 1+1=2; i2: 3+2=5; steady: 1+1+2=4.
        {GPU: 5},
    ),
    (
        "restart-policy-other-than-always-is-regular",
        pod([gpu(1)], init=[{**gpu(2, "i"), "restartPolicy": "OnFailure"}]),
        {GPU: 2},
    ),
    (
        "init-max-is-per-resource",
        pod([ctr(limits={GPU: "1", MIG_1G: "3"})], init=[ctr("i", limits={GPU: "2"})]),
        {GPU: 2, MIG_1G: 3},
    ),
    ("init-without-main-containers-key", {"spec": {"initContainers": [gpu(1)]}}, {GPU: 1}),
    ("overhead", pod([gpu(1)], overhead={GPU: "1", "cpu": "250m"}), {GPU: 2}),
    ("overhead-only", pod([ctr()], overhead={SHARED: "1"}), {SHARED: 1}),
    (
        "overhead-added-after-init-max",
        pod([gpu(1)], init=[gpu(3, "init")], overhead={GPU: "1"}),
        {GPU: 4},
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [c[1:] for c in REQUESTS], ids=[c[0] for c in REQUESTS]
)
def test_pod_requests_match_the_scheduler(body: dict[str, Any], expected: dict[str, int]) -> None:
    assert pod_requests(body, GPUS).counts == expected


def test_only_configured_names_count() -> None:
    only_full_gpus = ResourceMatcher([GPU])
    body = pod([ctr(limits={GPU: "1", SHARED: "4", MIG_1G: "2"})])
    assert pod_requests(body, only_full_gpus).counts == {GPU: 1}


BAD_PODS = [
    (
        "fractional-limit",
        pod([ctr("main", limits={GPU: "0.5"})]),
        "'main', resource nvidia.com/gpu",
    ),
    ("milli-request", pod([ctr("main", requests={GPU: "500m"})]), "must be whole numbers"),
    ("negative", pod([ctr("main", limits={GPU: "-1"})]), "cannot be negative"),
    ("garbage", pod([ctr("main", limits={GPU: "lots"})]), "expected a number"),
    ("absurd", pod([ctr("main", limits={GPU: "1G"})]), "absurd"),
    ("null-quantity", pod([ctr("main", limits={GPU: None})]), "got NoneType"),
    ("bad-init", pod([], init=[ctr("setup", limits={GPU: "x"})]), "'setup', resource"),
    ("bad-sidecar", pod([], init=[ctr("s", limits={GPU: "x"}, sidecar=True)]), "'s', resource"),
    ("bad-overhead", pod([gpu(1)], overhead={GPU: "1.5"}), "spec.overhead, resource"),
    ("bad-mig", pod([ctr("m", limits={MIG_3G: "1Xi"})]), "unknown suffix 'Xi'"),
]


@pytest.mark.parametrize(
    ("body", "message"), [c[1:] for c in BAD_PODS], ids=[c[0] for c in BAD_PODS]
)
def test_a_malformed_gpu_quantity_is_left_out_and_named(body: dict[str, Any], message: str) -> None:
    got = pod_requests(body, GPUS)
    assert len(got.malformed) == 1
    ((resource, why),) = got.malformed.items()
    assert resource not in got.counts  # left out, never a silent zero or a partial sum
    assert "invalid quantity" in why
    assert message in why


def test_a_malformed_resource_skips_only_itself() -> None:
    body = pod([ctr("main", limits={GPU: "2", MIG_1G: "lots"}), gpu(1, "second")])
    got = pod_requests(body, GPUS)
    assert got.counts == {GPU: 3}
    assert list(got.malformed) == [MIG_1G]
    assert "container 'main'" in got.malformed[MIG_1G]


REAL_WORLD_OTHERS = [
    ("sgx-epc-in-bytes", {"sgx.intel.com/epc": "1Mi"}),
    ("sgx-epc-plain-bytes", {"sgx.intel.com/epc": "98566144"}),
    ("hugepages", {"hugepages-1Gi": "4Gi"}),
    ("ephemeral-storage", {"ephemeral-storage": "100Gi"}),
    ("rdma-shared", {"rdma/hca_shared_devices_a": "1000"}),
    ("some-vendor-fraction", {"example.com/fpga-slice": "0.5"}),
]


@pytest.mark.parametrize(
    "others", [c[1] for c in REAL_WORLD_OTHERS], ids=[c[0] for c in REAL_WORLD_OTHERS]
)
def test_resources_the_spec_does_not_select_are_never_read(others: dict[str, str]) -> None:
    body = pod([ctr("main", limits={GPU: "1", **others}, requests=dict(others))])
    got = pod_requests(body, GPUS)
    assert got.counts == {GPU: 1}
    assert got.malformed == {}


COUNTS = [
    ("running", {"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}, True),
    ("pending-but-bound", {"spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}}, True),
    ("unknown-phase", {"spec": {"nodeName": "n1"}, "status": {"phase": "Unknown"}}, True),
    ("bound-no-status-yet", {"spec": {"nodeName": "n1"}}, True),
    (
        "terminating",
        {
            "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running"},
        },
        True,
    ),
    ("succeeded", {"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}}, False),
    ("failed", {"spec": {"nodeName": "n1"}, "status": {"phase": "Failed"}}, False),
    (
        "terminating-and-failed",
        {
            "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Failed"},
        },
        False,
    ),
    ("unbound-pending", {"spec": {}, "status": {"phase": "Pending"}}, False),
    ("empty-node-name", {"spec": {"nodeName": ""}, "status": {"phase": "Running"}}, False),
    ("no-spec", {"status": {"phase": "Running"}}, False),
    ("null-spec-and-status", {"spec": None, "status": None}, False),
    ("bound-null-status", {"spec": {"nodeName": "n1"}, "status": None}, True),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in COUNTS], ids=[c[0] for c in COUNTS])
def test_pod_counts_like_the_scheduler(body: dict[str, Any], expected: bool) -> None:
    assert pod_counts(body) is expected


MATCHES = [
    ("exact", [GPU], GPU, True),
    ("exact-is-not-prefix", [GPU], SHARED, False),
    ("wildcard-prefix", ["nvidia.com/mig-*"], MIG_1G, True),
    ("wildcard-needs-prefix", ["nvidia.com/mig-*"], GPU, False),
    ("wildcard-matches-empty-rest", ["nvidia.com/mig-*"], "nvidia.com/mig-", True),
    ("case-sensitive", [GPU], "NVIDIA.com/gpu", False),
    ("cpu-never", [GPU, "nvidia.com/*"], "cpu", False),
    ("no-patterns", [], GPU, False),
]


@pytest.mark.parametrize(
    ("patterns", "name", "expected"), [c[1:] for c in MATCHES], ids=[c[0] for c in MATCHES]
)
def test_resource_matcher(patterns: list[str], name: str, expected: bool) -> None:
    matcher = ResourceMatcher(patterns)
    assert matcher.matches(name) is expected
    assert matcher.matches(name) is expected  # the cached answer is the same


BAD_PATTERNS = [
    ("empty", "", "non-empty"),
    ("bare-star", "*", "cpu and memory"),
    ("star-in-middle", "nvidia.com/*-gpu", "only allowed at the end"),
    ("double-star", "nvidia.com/**", "only allowed at the end"),
]


@pytest.mark.parametrize(
    ("pattern", "message"), [c[1:] for c in BAD_PATTERNS], ids=[c[0] for c in BAD_PATTERNS]
)
def test_bad_pattern_is_refused(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match="resource name pattern") as caught:
        ResourceMatcher([GPU, pattern])
    assert message in str(caught.value)


def test_matcher_is_frozen_and_compares_by_patterns() -> None:
    matcher = ResourceMatcher([GPU, "nvidia.com/mig-*"])
    with pytest.raises(AttributeError, match="frozen"):
        matcher.patterns = ()
    assert matcher == ResourceMatcher((GPU, "nvidia.com/mig-*"))
    assert hash(matcher) == hash(ResourceMatcher([GPU, "nvidia.com/mig-*"]))
    assert matcher != ResourceMatcher([GPU])
    assert "nvidia.com/mig-*" in repr(matcher)


def test_matcher_cache_is_bounded() -> None:
    matcher = ResourceMatcher(["nvidia.com/mig-*"])
    hostile = [f"example.com/r{i}" for i in range(10_000)]
    assert not any(matcher.matches(name) for name in hostile)
    assert matcher.matches(MIG_1G)  # still right once the cache is full
    assert len(matcher._cache) <= podrequests.MAX_CACHED_NAMES
