"""The kubectl to use against the local control plane: the one built with it.

`hack/build-controlplane.sh` builds kubectl from the same k8s.io/kubernetes version as the API
server (no version skew, nothing needed from the machine). `GPU_INVENTORY_KUBECTL` overrides.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from gpu_inventory.testing.binaries import ensure_binaries


def kubectl_path() -> str:
    """`GPU_INVENTORY_KUBECTL`, else the kubectl built beside the control plane."""
    return os.environ.get("GPU_INVENTORY_KUBECTL") or str(ensure_binaries() / "kubectl")


def run_kubectl(
    kubeconfig: Path | str, *args: str, timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl args...` against `kubeconfig`; the result, whatever the exit code."""
    return subprocess.run(
        [kubectl_path(), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
