"""Readings -> the agent's part of the GPUNode status, and the merge patch that writes it.

Pure: no I/O; the caller passes `now`. The agent owns `summary`, `agent`, `driver` and `gpus`;
`kubernetes` belongs to the operator and never appears here.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from gpu_inventory.api import models
from gpu_inventory.nodeagent import health
from gpu_inventory.nodeagent.backend import DeviceReading, NodeReading


@dataclasses.dataclass(frozen=True, slots=True)
class NodeReport:
    """What the agent writes. Not a `GPUNodeStatus`: its bounds are the API server's to
    enforce, so an oversized report reaches it and is refused with a clear message."""

    summary: models.GPUNodeSummary
    agent: models.AgentInfo
    driver: models.DriverInfo
    gpus: tuple[models.GPU, ...]


class SeenGPUs:
    """Every GPU this agent has seen (or its earlier run, in the same boot, wrote), so one that
    drops off NVML's list is still reported, and all are listed while NVML is unavailable."""

    def __init__(self) -> None:
        self._identity: dict[str, models.GPU] = {}

    def seed(self, gpus: Iterable[models.GPU]) -> None:
        """Remember GPUs an earlier run wrote; what this run reads later takes precedence."""
        for gpu in gpus:
            self._identity.setdefault(gpu.uuid, _identity(gpu))

    def known(self) -> list[models.GPU]:
        """Every remembered GPU, identity only, by index."""
        return sorted(self._identity.values(), key=lambda g: (g.index, g.uuid))

    def vanished(self, devices: Iterable[DeviceReading]) -> list[models.GPU]:
        """Remember the GPUs read in `devices`; return each earlier one no longer among them.

        Only GPUs that were actually read are remembered: a placeholder for a GPU NVML never
        named must not turn into a phantom once the GPU is readable under its real UUID.
        """
        present = set()
        for device in devices:
            gpu = device.gpu
            present.add(gpu.uuid)
            known = self._identity.get(gpu.uuid)
            if device.lost is None and (
                known is None or (known.index, known.name, known.pci_bus_id) != _named(gpu)
            ):  # built once per identity, not on every read
                self._identity[gpu.uuid] = _identity(gpu)
        return [gpu for uuid, gpu in self._identity.items() if uuid not in present]


def _named(gpu: models.GPU) -> tuple[int, str, str]:
    return gpu.index, gpu.name, gpu.pci_bus_id


def _identity(gpu: models.GPU) -> models.GPU:
    return models.GPU(uuid=gpu.uuid, index=gpu.index, name=gpu.name, pci_bus_id=gpu.pci_bus_id)


def build_report(
    reading: NodeReading | None,
    *,
    now: datetime,
    xids: Mapping[str, Sequence[models.XidEvent]],
    vanished: Sequence[models.GPU] = (),
    remembered: Sequence[models.GPU] = (),
    last_driver: models.DriverInfo | None = None,
    nvml_message: str = "",
    version: str = "",
    pod_name: str = "",
    boot_id: str = "",
    policy: health.HealthPolicy = health.DEFAULT_POLICY,
) -> NodeReport:
    """The report at `now`. `reading` is None when NVML is unavailable or released
    (`nvml_message` says why): then the `remembered` GPUs are listed by identity with their
    XIDs, health from those XIDs or Unknown ("not read"), never stale readings, so no XID is
    erased from the only copy; `last_driver` is the driver last read."""
    gpus: list[models.GPU] = []
    if reading is not None:
        devices = [*reading.devices, *(DeviceReading(gpu, lost="Vanished") for gpu in vanished)]
    else:
        devices = [DeviceReading(gpu, lost="NotRead") for gpu in remembered]
    for device in devices:
        gpu = device.gpu.model_copy(update={"xids": list(xids.get(device.gpu.uuid, ()))})
        verdict = health.assess(
            gpu,
            now=now,
            lost=device.lost,
            policy=policy,
            xids_unwatched=device.xids_unwatched,
            unknown_recovery_action=device.unknown_recovery_action,
        )
        gpus.append(gpu.model_copy(update={"health": verdict}))
    agent = models.AgentInfo(
        version=version,
        pod_name=pod_name,
        heartbeat_time=now,
        nvml_available=reading is not None,
        message=models.clip(
            nvml_message if reading is None else notes(reading.devices), models.MAX_MESSAGE
        ),
        boot_id=boot_id,
    )
    return NodeReport(
        summary=summarize(gpus),
        agent=agent,
        driver=reading.driver if reading is not None else (last_driver or models.DriverInfo()),
        gpus=tuple(gpus),
    )


def product_label(name: str) -> str:
    """The product as GPU Feature Discovery labels it (`nvidia.com/gpu.product`): spaces as
    dashes, so `kubectl get gpunodes` matches node labels and the inventory's products."""
    return "-".join(name.split())


def summarize(gpus: Sequence[models.GPU]) -> models.GPUNodeSummary:
    """For `kubectl get gpunodes`: count, the most common product, worst health."""
    names = collections.Counter(g.name for g in gpus if g.name)
    return models.GPUNodeSummary(
        gpus=len(gpus),
        product=product_label(names.most_common(1)[0][0]) if names else "",
        health=health.worst(g.health.status for g in gpus),
        unhealthy=sum(1 for g in gpus if g.health.status == "Unhealthy"),
    )


def status_patch(report: NodeReport) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) for `/status`: only the agent's fields.

    Objects are sent with explicit nulls, so a reading that became unsupported is removed
    rather than left stale; `gpus` is a list, which a merge patch replaces whole.
    """
    return {
        "status": {
            "summary": _with_nulls(report.summary),
            "agent": _with_nulls(report.agent),
            "driver": _with_nulls(report.driver),
            "gpus": [gpu.to_wire() for gpu in report.gpus],
        }
    }


def _with_nulls(model: models.WireModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True)


def notes(devices: Sequence[DeviceReading]) -> str:
    """What NVML refused or cannot do here, so readers know a field or an XID is missing on
    purpose: from the readings' structured notes, never from the `unsupported` strings."""
    found = []
    mig = [d for d in devices if d.gpu.mig.enabled and d.refused]
    if mig:
        # nvmlEventSetWait_v2 (NVML API reference): in MIG mode "only if the caller has
        # appropriate privileges" are per-instance events reported; "in absence of required
        # privileges, only the events which affect all the instances (i.e. whole device) are".
        # Without the monitor capability NVML also refuses the instance list and even the
        # parent GPU's memory info (NVIDIA/k8s-device-plugin #399, #1683).
        found.append(
            f"MIG on GPU {_indices(mig)}: no permission to read "
            f"{', '.join(sorted({f for d in mig for f in d.refused}))}, and XIDs that affect "
            "one instance only are not reported; run the agent in MIG-monitoring mode "
            "(NVIDIA_MIG_MONITOR_DEVICES=all, CAP_SYS_ADMIN; see the README)"
        )
    for device in devices:
        if device.refused and not device.gpu.mig.enabled:
            found.append(
                f"GPU {device.gpu.index}: no permission to read {', '.join(device.refused)}"
            )
    unwatched = [d for d in devices if d.xids_unwatched is not None and d.lost is None]
    for error in sorted({d.xids_unwatched.error for d in unwatched if d.xids_unwatched}):
        same = [d for d in unwatched if d.xids_unwatched and d.xids_unwatched.error == error]
        if error == "NotSupported":
            found.append(f"GPU {_indices(same)}: no XID events (the GPU does not report them)")
        else:
            found.append(f"GPU {_indices(same)}: XID events cannot be watched (NVML {error})")
    return "; ".join(found)


def _indices(devices: Sequence[DeviceReading]) -> str:
    return ", ".join(str(d.gpu.index) for d in devices)
