"""`pod_requests` agrees with a step-by-step simulation of a pod starting up, for random pods.

The reference below does not reuse the implementation's formula: it walks the init sequence as
the kubelet runs it, writes down what is running at each step, and takes the peak. It works on
the generated integers, never on the rendered quantity strings, so parsing is checked too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_inventory.operator.accounting import ResourceMatcher, pod_requests

GPU_NAMES = ("nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-1g.10gb")
OTHER_NAMES = ("cpu", "example.com/fpga")
MATCHER = ResourceMatcher(["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-*"])

# Ways the same count can be written; the reference only ever sees the integer.
RENDERINGS: tuple[Callable[[int], Any], ...] = (
    str,
    int,
    lambda n: f"{n * 1000}m",
    lambda n: f"{n}.0",
    lambda n: f"{n * 10}e-1",
)


@dataclass
class Container:
    requests: dict[str, int]
    limits: dict[str, int]
    restart_policy: str | None  # only meaningful for init containers

    def in_use(self) -> dict[str, int]:
        """What the container holds while it runs: the request, or the limit if none is set."""
        held = dict(self.limits)
        held.update(self.requests)
        return held


@dataclass
class PodShape:
    containers: list[Container]
    init_containers: list[Container]
    overhead: dict[str, int]
    render: Callable[[int], Any]
    omit_init_key: bool


def expected_requests(shape: PodShape) -> dict[str, int]:
    """Simulate start-up: one footprint per init step, then the steady state; take the peak."""
    running_sidecars: dict[str, int] = {}
    footprints: list[dict[str, int]] = []
    for init in shape.init_containers:
        if init.restart_policy == "Always":
            # A sidecar starts and keeps running next to everything that comes after it.
            for name, n in init.in_use().items():
                running_sidecars[name] = running_sidecars.get(name, 0) + n
            footprints.append(dict(running_sidecars))
        else:
            # A regular init container runs to completion next to the sidecars started so far.
            footprint = dict(running_sidecars)
            for name, n in init.in_use().items():
                footprint[name] = footprint.get(name, 0) + n
            footprints.append(footprint)
    steady = dict(running_sidecars)
    for container in shape.containers:
        for name, n in container.in_use().items():
            steady[name] = steady.get(name, 0) + n
    footprints.append(steady)

    result = {}
    for name in GPU_NAMES:
        peak = max(footprint.get(name, 0) for footprint in footprints)
        total = peak + shape.overhead.get(name, 0)
        if total:
            result[name] = total
    return result


def render_resources(values: dict[str, int], render: Callable[[int], Any]) -> dict[str, Any]:
    # Non-GPU names get fractional quantities: they must never be parsed as GPU counts.
    return {name: render(n) if name in GPU_NAMES else f"{n}500m" for name, n in values.items()}


def render_container(
    index: int, container: Container, render: Callable[[int], Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"c{index}", "image": "busybox"}
    resources: dict[str, Any] = {}
    if container.requests:
        resources["requests"] = render_resources(container.requests, render)
    if container.limits:
        resources["limits"] = render_resources(container.limits, render)
    if resources:
        body["resources"] = resources
    if container.restart_policy is not None:
        body["restartPolicy"] = container.restart_policy
    return body


def render_pod(shape: PodShape) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeName": "n1",
        "containers": [
            render_container(i, c, shape.render) for i, c in enumerate(shape.containers)
        ],
    }
    if shape.init_containers or not shape.omit_init_key:
        spec["initContainers"] = [
            render_container(i, c, shape.render) for i, c in enumerate(shape.init_containers)
        ]
    if shape.overhead:
        spec["overhead"] = render_resources(shape.overhead, shape.render)
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}


resource_values = st.dictionaries(
    st.sampled_from(GPU_NAMES + OTHER_NAMES), st.integers(min_value=0, max_value=8), max_size=4
)


def containers(policies: st.SearchStrategy[str | None]) -> st.SearchStrategy[list[Container]]:
    return st.lists(
        st.builds(
            Container, requests=resource_values, limits=resource_values, restart_policy=policies
        ),
        max_size=5,
    )


pod_shapes = st.builds(
    PodShape,
    containers=containers(st.none()),
    init_containers=containers(st.sampled_from(["Always", "Always", "OnFailure", "Never", None])),
    overhead=resource_values,
    render=st.sampled_from(RENDERINGS),
    omit_init_key=st.booleans(),
)


@settings(max_examples=1000, deadline=None, database=None)
@given(pod_shapes)
def test_pod_requests_equals_start_up_simulation(shape: PodShape) -> None:
    assert pod_requests(render_pod(shape), MATCHER).counts == expected_requests(shape)
