"""The Lease rules (only one writer; take over only after the holder went silent on *our*
clock) and the operator's configuration from the environment."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from gpu_inventory.operator.__main__ import _parser, build_config
from gpu_inventory.operator.config import ConfigError, OperatorConfig
from gpu_inventory.operator.election import LeaseElector
from gpu_inventory.operator.kubeapi import ApiError
from gpu_inventory.testing.wait import eventually_async, holds


class FakeLeases:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.on_get: Callable[[], None] = lambda: None

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.on_get()
        return copy.deepcopy(self.lease)

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if self.lease is not None:
            raise ApiError(409, "exists", "create leases")
        self.lease = copy.deepcopy(dict(body))
        self.version += 1
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise ApiError(409, "conflict", "update leases")
        self.lease = copy.deepcopy(dict(body))
        self.version += 1
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def elector(api: FakeLeases, clock: Clock, identity: str) -> LeaseElector:
    return LeaseElector(
        api,
        "ops",
        "gpu-inventory-operator",
        identity,
        duration=15,
        renew_deadline=10,
        retry=2,
        clock=clock,
        wallclock=lambda: datetime(2026, 6, 1, tzinfo=UTC),
    )


def test_only_one_of_two_replicas_holds_the_lease() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert (a.is_leader(), b.is_leader()) == (True, False)


def test_a_standby_takes_over_only_after_the_holder_went_silent_for_a_duration() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()  # observes a's record now
    clock.t = 14.0
    assert not b.try_acquire_or_renew()
    assert not a.is_leader()  # a stopped trusting its lease before anyone could take it
    clock.t = 15.5
    assert b.try_acquire_or_renew()
    assert api.lease is not None
    assert api.lease["spec"]["holderIdentity"] == "b"
    assert api.lease["spec"]["leaseTransitions"] == 1


def test_the_holder_stops_writing_at_the_renew_deadline_and_writes_end_before_takeover() -> None:
    """client-go's timings: 15 s lease, 10 s renew deadline. A write started while leader must
    be over one second before the earliest moment a standby may take over."""
    api, clock = FakeLeases(), Clock()
    a = elector(api, clock, "a")
    a.try_acquire_or_renew()
    assert a.write_deadline() == 14.0
    clock.t = 9.9
    assert a.write_deadline() == 14.0
    clock.t = 10.0
    assert a.write_deadline() is None
    assert not a.is_leader()


def test_a_standby_counts_the_lease_from_after_its_get() -> None:
    """The old code stamped the observation before the GET: a slow GET shortened the wait."""
    api, clock = FakeLeases(), Clock()
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    a.try_acquire_or_renew()

    def slow_get() -> None:
        clock.t += 3.0

    api.on_get = slow_get
    b.try_acquire_or_renew()  # asked at 0, answered at 3: the record was seen at 3
    api.on_get = lambda: None
    clock.t = 17.5
    assert not b.try_acquire_or_renew()
    clock.t = 18.5
    assert b.try_acquire_or_renew()


def test_a_renewing_holder_keeps_the_lease() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    a.try_acquire_or_renew()
    for step in range(1, 20):
        clock.t = step * 2.0
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()


def test_a_released_lease_is_taken_at_once() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    a.try_acquire_or_renew()
    a._release()
    assert b.try_acquire_or_renew()


# --- configuration ------------------------------------------------------------------------------


def test_defaults_and_environment() -> None:
    config = OperatorConfig.from_env(
        {"GPU_INVENTORY_WRITE_WINDOW": "0.25", "GPU_INVENTORY_METRICS_PORT": "0", "POD_NAME": "p"}
    )
    assert (config.write_window, config.metrics_port, config.identity) == (0.25, 0, "p")
    assert config.standalone


def test_pod_namespace_turns_the_lease_on() -> None:
    config = OperatorConfig.from_env({"POD_NAMESPACE": "gpu-inventory"})
    assert (config.lease_namespace, config.standalone) == ("gpu-inventory", False)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GPU_INVENTORY_WRITE_WINDOW": "soon"}, "GPU_INVENTORY_WRITE_WINDOW='soon'"),
        ({"GPU_INVENTORY_WRITE_WINDOW": "0"}, "must be > 0"),
        ({"GPU_INVENTORY_METRICS_PORT": "70000"}, "0..65535"),
        ({"GPU_INVENTORY_LIST_CHUNK_SIZE": "0"}, "must be >= 1"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OperatorConfig.from_env(env)


def test_lease_timings_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="LEASE_RENEW_DEADLINE"):
        OperatorConfig.from_env({"POD_NAMESPACE": "ns", "GPU_INVENTORY_LEASE_RENEW_DEADLINE": "20"})


def test_command_line_overrides_the_environment() -> None:
    args = _parser().parse_args(["--standalone", "--metrics-port", "9999"])
    config = build_config(args, {"POD_NAMESPACE": "ns"})
    assert (config.standalone, config.metrics_port) == (True, 9999)


def test_a_replica_still_listing_takes_no_lease_another_held() -> None:
    """A cold replica in a rollout must leave the takeover to the warm standby; a Lease
    nobody ever held (a fresh install) it takes at once."""
    api, clock = FakeLeases(), Clock()
    cold = elector(api, clock, "cold")
    cold.may_take_over = lambda: False
    assert cold.try_acquire_or_renew()  # no Lease yet: someone has to write "Indexing"
    cold._release()
    assert not cold.try_acquire_or_renew()  # released by its holder: not while cold
    cold.may_take_over = lambda: True
    assert cold.try_acquire_or_renew()


async def test_leadership_changes_are_announced() -> None:
    api, clock = FakeLeases(), Clock()
    leader = elector(api, clock, "a")
    leader.retry = 0.01
    changes: list[bool] = []
    leader.on_change = changes.append
    task = asyncio.create_task(leader.run())

    async def announced() -> None:
        holds(changes == [True], changes)

    await eventually_async(announced, timeout=5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
