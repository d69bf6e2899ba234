"""When the agent must let go of NVML: the GPU Operator is about to unload or reconfigure the
NVIDIA driver on this node, and an open NVML (open /dev/nvidia* files) would hold the kernel
module and stall it.

Pure: no I/O; the caller passes the node's labels. The GPU Operator's upgrade flow drains by
`nvidia.com/gpu` requests and skips DaemonSets, so it cannot evict this agent (NVIDIA/gpu-operator
#2570); the agent steps aside itself, on either of two signals the GPU Operator sets:

1. The upgrade controller's per-node state label, set only when the ClusterPolicy has
   `driver.upgradePolicy.autoUpgrade` on. Key: `nvidia.com/%s-driver-upgrade-state`
   (NVIDIA/k8s-operator-libs pkg/upgrade/consts.go, UpgradeStateLabelKeyFmt) with driver name
   "gpu" (NVIDIA/gpu-operator cmd/gpu-operator/main.go, `upgrade.SetDriverName("gpu")`). Only
   two states touch the driver (k8s-operator-libs pkg/upgrade/common_manager.go):
   pod-restart-required, where ProcessPodRestartNodes deletes the driver pod (or unblocks a
   driver waiting for a safe load) and the new one unloads the old module; and
   validation-required, where the driver may still restart ("this may happen in case if driver
   restarted after it was moved to UpgradeStateValidationRequired state",
   ProcessValidationRequiredNodes). Cordon, wait-for-jobs, pod deletion and drain move only
   workloads; upgrade-failed means the driver pod keeps failing, and may last until a person
   acts, so the agent keeps reporting through it.
2. The GPU-client deploy label `nvidia.com/gpu.deploy.client` (GPU Operator v26.7.0 and
   k8s-driver-manager v0.12.0 on): "true" on GPU nodes (gpu-operator controllers/
   state_manager.go), flipped by the driver's own init container to "paused-for-driver-upgrade"
   (or "<old value>_paused-for-driver-upgrade") on every driver pod start
   (k8s-driver-manager cmd/driver-manager/main.go, maybeSetPaused), and by the MIG manager to
   "paused-for-mig-change" while it repartitions the GPUs.

After a release for the driver, NVML cannot be taken back in the same process: the NVIDIA
runtime mounted the old driver's user-space library when the container was created, and
nvidia-ml-py never unloads a library it loaded (`nvmlShutdown`: "Leave the library loaded").
`Release.driver` says so; the agent then exits once the release is over, for a new container.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

UPGRADE_STATE_LABEL: Final = "nvidia.com/gpu-driver-upgrade-state"
DRIVER_STATES: Final = frozenset({"pod-restart-required", "validation-required"})
"""k8s-operator-libs UpgradeStatePodRestartRequired and UpgradeStateValidationRequired."""

GPU_CLIENT_LABEL: Final = "nvidia.com/gpu.deploy.client"
PAUSED_MARKER: Final = "paused-for-"
DRIVER_PAUSE: Final = "paused-for-driver-upgrade"
"""k8s-driver-manager's pausedStr; the MIG manager writes "paused-for-mig-change"."""


@dataclasses.dataclass(frozen=True, slots=True)
class Release:
    """Why NVML is released now, in words fit for `AgentInfo.message`."""

    reason: str
    driver: bool
    """The driver itself is replaced: NVML can be taken again only by a new container."""


def release_for(labels: Mapping[str, str]) -> Release | None:
    """Whether the labels ask the agent to release NVML now; None to keep it."""
    state = labels.get(UPGRADE_STATE_LABEL, "")
    if state in DRIVER_STATES:
        return Release(
            "NVML released while the GPU Operator upgrades the NVIDIA driver on this node "
            f"({UPGRADE_STATE_LABEL}={state})",
            driver=True,
        )
    client = labels.get(GPU_CLIENT_LABEL, "")
    if PAUSED_MARKER in client:
        return Release(
            "NVML released while the GPU Operator has GPU clients paused on this node "
            f"({GPU_CLIENT_LABEL}={client})",
            driver=DRIVER_PAUSE in client,
        )
    return None


def signals(labels: Mapping[str, str]) -> str:
    """The release signals' values now, e.g. "nvidia.com/gpu-driver-upgrade-state=upgrade-done"
    (or that they are absent), for the message that ends a release."""
    found = [
        f"{key}={labels[key]}" for key in (UPGRADE_STATE_LABEL, GPU_CLIENT_LABEL) if key in labels
    ]
    return ", ".join(found) or f"no {UPGRADE_STATE_LABEL} or {GPU_CLIENT_LABEL} label"
