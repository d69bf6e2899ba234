"""The `nvml` fixture: a simulated device set behind the real `pynvml` functions."""

from __future__ import annotations

import pynvml
import pytest

from gpu_inventory.testing.simnvml import SimulatedNVML, sim_gpu


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> SimulatedNVML:
    """Four H100s behind the real pynvml functions; tests change GPUs and inject failures."""
    sim = SimulatedNVML([sim_gpu(i) for i in range(4)])
    for name, function in sim.functions().items():
        assert hasattr(pynvml, name), f"pynvml has no {name}: the simulation is out of date"
        monkeypatch.setattr(pynvml, name, function)
    return sim
