"""`make cluster-up`, kubectl against `.cluster/kubeconfig`, `make cluster-down`: nothing left."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gpu_inventory.testing.binaries import REPO_ROOT
from gpu_inventory.testing.controlplane import alive
from gpu_inventory.testing.kubectl import run_kubectl

pytestmark = pytest.mark.cluster


def test_cluster_up_kubectl_cluster_down_leaves_no_process(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "cluster"
    make = ["make", "--no-print-directory", "-C", str(REPO_ROOT), f"CLUSTER_DIR={cluster_dir}"]
    up = subprocess.run([*make, "cluster-up"], capture_output=True, text=True, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    pids = json.loads((cluster_dir / "controlplane.json").read_text())["pids"]
    try:
        assert all(alive(pid) for pid in pids.values()), pids
        namespaces = run_kubectl(cluster_dir / "kubeconfig", "get", "ns", "-o", "name", timeout=60)
        assert namespaces.returncode == 0, namespaces.stderr
        assert "namespace/default" in namespaces.stdout.split()
    finally:
        down = subprocess.run([*make, "cluster-down"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert [name for name, pid in pids.items() if alive(pid)] == []
