"""The agent's XID memory: one entry per code, bounded without losing what matters, and
restorable from the agent's own GPUNode status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpu_inventory.api import models
from gpu_inventory.nodeagent.earlier import read_earlier
from gpu_inventory.nodeagent.memory import XidMemory

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DAY = 86_400.0


def codes(memory: XidMemory, uuid: str = "GPU-1") -> dict[int, int]:
    return {e.xid: e.count for e in memory.snapshot(NOW).get(uuid, [])}


def test_one_entry_per_code_with_count_first_and_last_time() -> None:
    memory = XidMemory(DAY)
    for minutes in (0, 5, 9):
        memory.record("GPU-1", 13, NOW - timedelta(minutes=60 - minutes))
    (entry,) = memory.snapshot(NOW)["GPU-1"]
    assert (entry.xid, entry.count) == (13, 3)
    assert entry.first_time == NOW - timedelta(minutes=60)
    assert entry.time == NOW - timedelta(minutes=51)
    assert (entry.mnemonic, entry.resolution, entry.class_) == (
        "ROBUST_CHANNEL_GR_EXCEPTION / ROBUST_CHANNEL_GR_ERROR_SW_NOTIFY",
        "RESTART_APP",
        "Application",
    )


def test_the_bound_drops_the_least_severe_and_oldest_codes_first() -> None:
    memory = XidMemory(DAY, per_gpu=4)
    memory.record("GPU-1", 79, NOW - timedelta(hours=5))  # Unhealthy, oldest of all
    memory.record("GPU-1", 94, NOW - timedelta(hours=4))  # Degraded
    for minute, code in enumerate((13, 31, 43, 68, 8)):  # Healthy, newer
        memory.record("GPU-1", code, NOW - timedelta(minutes=50 - minute))
    assert set(codes(memory)) == {79, 94, 68, 8}


def test_codes_leave_the_memory_when_the_window_ends() -> None:
    memory = XidMemory(3600)
    memory.record("GPU-1", 79, NOW - timedelta(minutes=61))
    memory.record("GPU-1", 48, NOW - timedelta(minutes=59))
    assert codes(memory) == {48: 1}


def test_restore_merges_with_what_was_seen_since_and_recomputes_the_meaning() -> None:
    memory = XidMemory(DAY)
    memory.record("GPU-1", 109, NOW - timedelta(minutes=1))
    written = models.GPU(
        uuid="GPU-1",
        index=0,
        xids=[
            models.XidEvent(
                xid=109,
                time=NOW - timedelta(hours=2),
                first_time=NOW - timedelta(hours=3),
                count=4,
                class_="Application",  # what an older agent thought
                action="RestartApplication",
            )
        ],
    )
    assert memory.restore([written]) == 1
    (entry,) = memory.snapshot(NOW)["GPU-1"]
    assert (entry.count, entry.first_time, entry.time) == (
        5,
        NOW - timedelta(hours=3),
        NOW - timedelta(minutes=1),
    )
    assert (entry.resolution, entry.action) == ("RESET_GPU", "ResetGPU")  # today's catalog


def test_counts_saturate_at_the_schemas_maximum() -> None:
    memory = XidMemory(DAY)
    memory.record("GPU-1", 13, NOW, count=models.MAX_XID_COUNT - 1)
    memory.record("GPU-1", 13, NOW, count=5)
    assert codes(memory) == {13: models.MAX_XID_COUNT}


def test_a_gpu_reset_resolves_reset_class_codes_only() -> None:
    """Catalog RESET_GPU (109), the XID 48/74 workflows and XID 94 (DCGM: reset deferrable) are
    resolved by a reset; RESTART_BM (79) only by a reboot; application codes stay as history."""
    memory = XidMemory(DAY)
    for code in (109, 48, 74, 94, 79, 13):
        memory.record("GPU-1", code, NOW)
    assert memory.forget_resets() == 4
    assert set(codes(memory)) == {79, 13}


def test_an_earlier_status_is_read_entry_by_entry() -> None:
    status = {
        "agent": {"bootId": "b"},
        "driver": {"driverVersion": 570},  # not a string: skipped, not fatal
        "gpus": [
            {
                "uuid": "GPU-1",
                "index": 0,
                "xids": [
                    {"xid": 79, "time": "2026-11-01T11:00:00"},  # no time zone
                    {"xid": 13, "time": "2026-11-01T11:00:00Z", "count": 2**40},
                ],
            },
            {"uuid": "GPU-1", "index": 1},  # the same GPU twice: the first one counts
        ],
    }
    earlier = read_earlier(status, NOW)
    assert earlier.boot_id == "b"
    assert earlier.driver == models.DriverInfo()
    (gpu,) = earlier.gpus
    assert [(x.xid, x.count) for x in gpu.xids] == [(13, models.MAX_XID_COUNT)]
    assert [s.split(":")[0] for s in earlier.skipped] == ["driver", "gpus[0].xids[0]"]
