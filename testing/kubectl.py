"""Find the kubectl to use against the local control plane.

The machines ship kubectl 1.32 as `kubectl` and versioned binaries (`kubectl.1.33`, ...) beside
it; kubectl supports one minor version of skew, so prefer the newest versioned one.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path


@functools.cache
def kubectl_path() -> str:
    """`GPU_INVENTORY_KUBECTL`, else the newest `kubectl.1.N` beside `kubectl`, else `kubectl`."""
    override = os.environ.get("GPU_INVENTORY_KUBECTL")
    if override:
        return override
    default = shutil.which("kubectl")
    if default is None:
        raise FileNotFoundError("kubectl is not on PATH (set GPU_INVENTORY_KUBECTL)")
    folder = Path(default).resolve().parent
    versioned = []
    for candidate in folder.glob("kubectl.1.*"):
        match = re.fullmatch(r"kubectl\.1\.(\d+)", candidate.name)
        if match and os.access(candidate, os.X_OK):
            versioned.append((int(match.group(1)), candidate))
    return str(max(versioned)[1]) if versioned else default


def run_kubectl(
    kubeconfig: Path | str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`kubectl args...` against `kubeconfig`; the result, whatever the exit code."""
    return subprocess.run(
        [kubectl_path(), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
