"""Find the binaries the tests run, building each once with the project's own scripts.

The build scripts are the one place that knows how to build and where the cache lives; this
module only runs them (idempotent: seconds when cached) and reads the path they print last.
- `ensure_binaries()`: etcd, kube-apiserver, kube-controller-manager and kubectl
  (`hack/build-controlplane.sh`); `GPU_INVENTORY_BIN_DIR` points at prebuilt ones instead.
- `ensure_tool(name)`: helm, promtool, kstatus-check, controller-gen, or the file of
  prometheus-operator's monitoring CRDs (`hack/build-tool.sh`, all from `hack/tools`).
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-controlplane.sh"
TOOL_SCRIPT = REPO_ROOT / "hack" / "build-tool.sh"
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")

Tool = Literal["helm", "promtool", "kstatus-check", "controller-gen", "monitoring-crds"]


class BinariesError(RuntimeError):
    """A binary could not be found or built."""


def _run_build(script: Path, *args: str) -> Path:
    """Run a build script (its log goes to stderr) and return the path it prints last."""
    if not script.exists():
        raise BinariesError(f"{script} is missing")
    result = subprocess.run(
        ["bash", str(script), *args], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise BinariesError(
            f"{script} {' '.join(args)} failed with exit code {result.returncode}; its log is above"
        )
    return Path(result.stdout.strip().splitlines()[-1])


@functools.cache
def ensure_binaries() -> Path:
    """The directory holding etcd, kube-apiserver, kube-controller-manager and kubectl."""
    override = os.environ.get("GPU_INVENTORY_BIN_DIR")
    directory = Path(override) if override else _run_build(BUILD_SCRIPT)
    missing = [name for name in REQUIRED if not (directory / name).is_file()]
    if missing:
        raise BinariesError(f"{directory} lacks {', '.join(missing)}")
    return directory


@functools.cache
def ensure_tool(name: Tool) -> Path:
    """The path of a pinned tool (or generated file), built into the cache on first use."""
    path = _run_build(TOOL_SCRIPT, name)
    if not path.is_file():
        raise BinariesError(f"{TOOL_SCRIPT} {name} printed {path}, which does not exist")
    return path
