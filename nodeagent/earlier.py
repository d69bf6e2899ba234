"""What an earlier run of this agent wrote into its GPUNode, read back for a restart.

Pure: no I/O; the caller passes the status as read and `now`. Only the agent's own memory is
read (agent.bootId, driver.driverVersion, gpus[].{uuid, index, name, pciBusId, xids}), entry by
entry: a bad entry is skipped and named, never the whole status (the operator's
`status.kubernetes`, or a field a newer version added, cannot block a restore). Times from the
future are clamped to `now`, so a skewed or hostile entry cannot outlive the XID window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import pydantic

from gpu_inventory.api import errors, models

_IDENTITY: Final = ("uuid", "index", "name", "pciBusId")


@dataclasses.dataclass(frozen=True, slots=True)
class Earlier:
    """The restorable part of an earlier status."""

    boot_id: str = ""
    driver: models.DriverInfo = dataclasses.field(default_factory=models.DriverInfo)
    gpus: tuple[models.GPU, ...] = ()
    """Identity and XIDs only; every other field is left at its default."""
    skipped: tuple[str, ...] = ()
    """What was left out, and why (for the log)."""


def read_earlier(status: Mapping[str, Any], now: datetime) -> Earlier:
    """The agent's memory in `status` (a GPUNode's status as the API server returned it)."""
    skipped: list[str] = []
    agent = status.get("agent")
    boot = agent.get("bootId", "") if isinstance(agent, Mapping) else ""
    if not isinstance(boot, str) or len(boot) > 63:
        skipped.append("agent.bootId: not a boot ID")
        boot = ""
    driver = _driver(status.get("driver"), skipped)
    gpus: list[models.GPU] = []
    listed = status.get("gpus", [])
    if not isinstance(listed, list):
        skipped.append("gpus: not a list")
        listed = []
    seen: set[str] = set()
    for position, raw in enumerate(listed[: models.MAX_GPUS_PER_NODE]):
        gpu = _gpu(raw, f"gpus[{position}]", now, skipped)
        if gpu is not None and gpu.uuid not in seen:
            seen.add(gpu.uuid)
            gpus.append(gpu)
    return Earlier(boot_id=boot, driver=driver, gpus=tuple(gpus), skipped=tuple(skipped))


def _driver(raw: Any, skipped: list[str]) -> models.DriverInfo:
    if raw is None:
        return models.DriverInfo()
    try:
        return models.DriverInfo.model_validate(raw)
    except pydantic.ValidationError as error:
        skipped.append(f"driver: {errors.validation_summary(error)}")
        return models.DriverInfo()


def _gpu(raw: Any, where: str, now: datetime, skipped: list[str]) -> models.GPU | None:
    if not isinstance(raw, Mapping):
        skipped.append(f"{where}: not an object")
        return None
    try:
        gpu = models.GPU.model_validate({k: raw[k] for k in _IDENTITY if k in raw})
    except pydantic.ValidationError as error:
        skipped.append(f"{where}: {errors.validation_summary(error)}")
        return None
    entries = raw.get("xids", [])
    if not isinstance(entries, list):
        skipped.append(f"{where}.xids: not a list")
        entries = []
    xids: list[models.XidEvent] = []
    for number, entry in enumerate(entries[: models.MAX_XIDS]):
        event = _xid(entry, f"{where}.xids[{number}]", now, skipped)
        if event is not None:
            xids.append(event)
    return gpu.model_copy(update={"xids": xids})


def _xid(raw: Any, where: str, now: datetime, skipped: list[str]) -> models.XidEvent | None:
    if not isinstance(raw, Mapping):
        skipped.append(f"{where}: not an object")
        return None
    # Only what the memory keeps: class, action, resolution and mnemonic are recomputed from
    # today's catalog, so an older or newer agent's words for them cannot block it.
    kept = {k: raw[k] for k in ("xid", "time", "firstTime", "count") if k in raw}
    if isinstance(kept.get("count"), int) and kept["count"] > models.MAX_XID_COUNT:
        kept["count"] = models.MAX_XID_COUNT  # saturates, as the memory does
    try:
        event = models.XidEvent.model_validate(kept)
    except pydantic.ValidationError as error:
        skipped.append(f"{where}: {errors.validation_summary(error)}")
        return None
    if event.time.tzinfo is None or (event.first_time and event.first_time.tzinfo is None):
        skipped.append(f"{where}: a time without a time zone")
        return None
    last = min(event.time, now)
    first = min(event.first_time or last, last)
    return event.model_copy(update={"time": last, "first_time": first})
