"""An operator started before its CRDs are installed says so and exits (so its pod restarts
until they are), instead of waiting forever without a word: kopf resolves the resources it
watches once, at start, and scanning is off."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu_inventory.testing.controlplane import ControlPlane, free_port

pytestmark = pytest.mark.cluster

OPERATOR = str(Path(sys.executable).with_name("gpu-inventory-operator"))


@pytest.fixture(scope="module")
def bare_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane with no gpu-inventory CRDs."""
    workdir = tmp_path_factory.mktemp("no-crds")
    plane = ControlPlane(workdir)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(workdir / "etcd", ignore_errors=True)


def test_without_its_crds_the_operator_exits_and_says_why(bare_plane: ControlPlane) -> None:
    result = subprocess.run(
        [OPERATOR, "--standalone", "--liveness", ""],
        env=bare_plane.env(GPU_INVENTORY_METRICS_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "does not serve gpuinventories, gpunodes in gpuinventory.io/v1alpha1" in output
    assert "install the CRDs" in output
