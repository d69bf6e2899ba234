"""`make demo` works on this machine: it starts everything, prints the answers, stops cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def test_the_demo_prints_the_inventory_and_an_mcp_answer(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "gpu_inventory.testing.demo", "--once", "--dir", str(workdir)],
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "$ kubectl get gpuinventory" in out
    inventory_row = out.split("$ kubectl get gpuinventory\n", 1)[1].splitlines()[1].split()
    assert inventory_row[:8] == ["cluster", "4", "25", "19", "9", "10", "0", "True"]
    assert '"node_name": "gpu-t4-a"' in out
    assert '"pod_name": "gpu-inventory-agent-gpu-t4-a"' in out
    assert out.rstrip().endswith("Stopped.")
    assert not (workdir / "controlplane.json").exists(), "the control plane was not stopped"
