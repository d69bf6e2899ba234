"""Find the control-plane binaries, building them once with `hack/build-controlplane.sh`.

The build script is the one place that knows how to build and where the cache lives; this module
only runs it (idempotent: seconds when cached) and reads the directory it prints last.
`GPU_INVENTORY_BIN_DIR` points at prebuilt binaries and skips the build.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-controlplane.sh"
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager")


class BinariesError(RuntimeError):
    """The control-plane binaries could not be found or built."""


def ensure_binaries() -> Path:
    """The directory holding etcd, kube-apiserver and kube-controller-manager."""
    override = os.environ.get("GPU_INVENTORY_BIN_DIR")
    if override:
        directory = Path(override)
    else:
        if not BUILD_SCRIPT.exists():
            raise BinariesError(f"{BUILD_SCRIPT} is missing; set GPU_INVENTORY_BIN_DIR instead")
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
        )
        if result.returncode != 0:
            raise BinariesError(
                f"{BUILD_SCRIPT} failed with exit code {result.returncode}; its log is above"
            )
        directory = Path(result.stdout.strip().splitlines()[-1])
    missing = [name for name in REQUIRED if not (directory / name).is_file()]
    if missing:
        raise BinariesError(f"{directory} lacks {', '.join(missing)}")
    return directory
