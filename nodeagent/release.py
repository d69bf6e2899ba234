"""When the agent must let go of NVML: the GPU Operator is about to unload or reconfigure the
NVIDIA driver on this node, and an open NVML (open /dev/nvidia* files) would hold the kernel
module and stall it.

Pure: no I/O; the caller passes the node's labels. The GPU Operator's upgrade flow drains by
`nvidia.com/gpu` requests and skips DaemonSets, so it cannot evict this agent (NVIDIA/gpu-operator
#2570); the agent steps aside itself, on either of two signals the GPU Operator sets:

1. The upgrade controller's per-node state label. Key: `nvidia.com/%s-driver-upgrade-state`
   (NVIDIA/k8s-operator-libs pkg/upgrade/consts.go, UpgradeStateLabelKeyFmt) with driver name
   "gpu" (NVIDIA/gpu-operator cmd/gpu-operator/main.go, `upgrade.SetDriverName("gpu")`). An
   upgrade is in progress in every state but "", upgrade-required and upgrade-done
   (k8s-operator-libs pkg/upgrade/common_manager.go, GetUpgradesInProgress); upgrade-failed
   counts as in progress there too, and the driver may be mid-reload, so NVML stays released.
2. The GPU-client deploy label `nvidia.com/gpu.deploy.client`, "true" on GPU nodes (gpu-operator
   26.7 controllers/state_manager.go), which the driver's own init container flips to
   "paused-for-driver-upgrade" on every driver pod start (NVIDIA/k8s-driver-manager v0.12.0,
   cmd/driver-manager/main.go, maybeSetPaused) and the MIG manager to "paused-for-mig-change"
   while it repartitions the GPUs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

UPGRADE_STATE_LABEL: Final = "nvidia.com/gpu-driver-upgrade-state"
# k8s-operator-libs pkg/upgrade/consts.go: UpgradeStateUnknown, UpgradeStateUpgradeRequired,
# UpgradeStateDone. Every other state (cordon-required, wait-for-jobs-required,
# pod-deletion-required, drain-required, node-maintenance-required, post-maintenance-required,
# pod-restart-required, validation-required, uncordon-required, upgrade-failed) is in progress.
NOT_UPGRADING: Final = frozenset({"", "upgrade-required", "upgrade-done"})

GPU_CLIENT_LABEL: Final = "nvidia.com/gpu.deploy.client"
PAUSED_MARKER: Final = "paused-for-"
"""k8s-driver-manager writes "paused-for-driver-upgrade" (or "<old value>_paused-for-driver-
upgrade"); the MIG manager writes "paused-for-mig-change"."""


def release_reason(labels: Mapping[str, str]) -> str | None:
    """Why NVML must be released now, in words fit for `AgentInfo.message`; None to keep it."""
    state = labels.get(UPGRADE_STATE_LABEL, "")
    if state not in NOT_UPGRADING:
        return (
            "NVML released while the GPU Operator upgrades the NVIDIA driver on this node "
            f"({UPGRADE_STATE_LABEL}={state})"
        )
    client = labels.get(GPU_CLIENT_LABEL, "")
    if PAUSED_MARKER in client:
        return (
            "NVML released while the GPU Operator has GPU clients paused on this node "
            f"({GPU_CLIENT_LABEL}={client})"
        )
    return None
