"""The `nvml` fixture: a simulated device set behind the real `pynvml` functions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gpu_inventory.testing.simnvml import SimulatedNVML, sim_gpu


@pytest.fixture
def nvml() -> Iterator[SimulatedNVML]:
    """Four H100s behind the real pynvml functions; tests change GPUs and inject failures."""
    with SimulatedNVML([sim_gpu(i) for i in range(4)]).installed() as sim:
        yield sim
