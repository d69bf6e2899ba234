"""The API models produce only what the generated CRDs admit."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import yaml

from gpu_inventory.api import models
from gpu_inventory.testing.binaries import REPO_ROOT


def test_last_sync_time_is_written_in_the_one_form_the_crd_admits() -> None:
    """An offset or sub-second time given in Python reaches the wire as UTC seconds with `Z`,
    which the generated CRD's pattern (what the API server enforces) accepts."""
    crd = yaml.safe_load((REPO_ROOT / "crds" / "gpuinventory.io_gpuinventories.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    pattern = schema["properties"]["status"]["properties"]["lastSyncTime"]["pattern"]
    given = datetime(2026, 1, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    wire = models.GPUInventoryStatus(last_sync_time=given).to_wire()["lastSyncTime"]
    assert wire == "2026-01-01T12:00:00Z"
    assert re.fullmatch(pattern, wire)
