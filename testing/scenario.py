"""Scenario files: a simulated node's GPUs and driver, in NVML's terms, and events on a script.

A scenario builds a `SimulatedNVML` (`simulate`), which the agent's real NVML backend reads
through `pynvml`. Shipped scenarios live in `scenarios/` next to this module. The format (YAML;
unknown keys are errors, and the whole timeline is played once at load, so a bad path or value
fails at load, not mid-run):

    description: one line
    driver: {version: "570.124.06", cuda: 12080, nvml: "12.570.124.06", missing: []}
    nvml: ok                      # or an NVML error nvmlInit fails with: DriverNotLoaded, ...
    mig_monitor: true             # false: no MIG monitor capability (instances: NoPermission)
    gpus:                         # simnvml.SimGPU fields, `count` copies of each
      - count: 8
        name: NVIDIA H100 80GB HBM3
        errors: {nvmlDeviceGetRetiredPages: NotSupported}
    events:                       # `at` seconds after start; `gpu` is an index into the list
      - {at: 10, gpu: 3, xid: 79, set: {recovery_action: NODE_REBOOT}}
      - {at: 12, gpu: 3, lost: GpuIsLost}     # or `gone: true`; or, without gpu, `nvml: ...`

A GPU's uuid and bus id default to values derived from the node (the seed) and index, and so
do the UUIDs of MIG devices that name none.
"""

from __future__ import annotations

import copy
import importlib.resources
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from gpu_inventory.api import errors
from gpu_inventory.testing.simnvml import SimDriver, SimGPU, SimulatedNVML, error_code, identify


class ScenarioError(ValueError):
    """A scenario file that cannot be found or does not fit the format; says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioGPUs(BaseModel):
    """`count` identical GPUs; every other key is a `SimGPU` field."""

    model_config = ConfigDict(extra="allow")

    count: Annotated[int, Field(ge=1, le=1024)] = 1


class ScenarioEvent(_Strict):
    """Something that happens `at` seconds after start, to GPU `gpu` (by index) or to NVML."""

    at: Annotated[float, Field(ge=0)]
    gpu: Annotated[int, Field(ge=0)] | None = None
    xid: Annotated[int, Field(ge=0, le=65_535)] | None = None
    gpu_instance: Annotated[int, Field(ge=0)] | None = None
    """The MIG GPU instance the XID belongs to (None: the whole GPU)."""
    set: dict[str, Any] = {}
    """New values by dotted SimGPU path: `{ecc.volatile_corrected: 12, temperature: 80}`."""
    lost: Literal["GpuIsLost", "ResetRequired"] | None = None
    gone: bool = False
    """The GPU disappears from NVML's device list."""
    nvml: str | None = None
    """NVML as a whole goes away (an NVML error name) or comes back (`ok`)."""


class Scenario(_Strict):
    description: str = ""
    driver: SimDriver = SimDriver()
    nvml: str = "ok"
    mig_monitor: bool = True
    gpus: list[ScenarioGPUs] = []
    events: list[ScenarioEvent] = []


def scenario_names() -> list[str]:
    """The scenarios shipped with the simulator."""
    return sorted(p.name[:-5] for p in _shipped().iterdir() if p.name.endswith(".yaml"))


def _shipped() -> Any:
    return importlib.resources.files("gpu_inventory.testing") / "scenarios"


def load_scenario(ref: str | Path) -> tuple[str, Scenario]:
    """Load a scenario by path, or by the name of a shipped one (`t4-single`); (name, scenario)."""
    path = Path(ref)
    if path.is_file():
        text, name = path.read_text(), path.stem
    else:
        name = path.name.removesuffix(".yaml")
        candidate = _shipped() / f"{name}.yaml"
        if str(ref) not in (name, f"{name}.yaml") or not candidate.is_file():
            raise ScenarioError(
                f"scenario {str(ref)!r}: no such file, and not a shipped scenario "
                f"(shipped: {', '.join(scenario_names())})"
            )
        text = candidate.read_text()
    try:
        raw = yaml.safe_load(text) or {}
        if not isinstance(raw, dict):
            raise ValueError("the top level must be a mapping")
        # Top-level `x-...` keys only hold YAML anchors for the GPUs below.
        scenario = Scenario.model_validate(
            {k: v for k, v in raw.items() if not str(k).startswith("x-")}
        )
        simulate(scenario, seed="dry-run").play_all()
    except yaml.YAMLError as error:
        raise ScenarioError(f"scenario {str(ref)!r} is not valid YAML: {error}") from error
    except pydantic.ValidationError as error:
        problems = errors.validation_summary(error)
        raise ScenarioError(f"scenario {str(ref)!r} is invalid: {problems}") from error
    except (KeyError, TypeError, ValueError) as error:
        raise ScenarioError(f"scenario {str(ref)!r} is invalid: {error}") from error
    return name, scenario


class Timeline:
    """Plays a scenario's events on `elapsed()` (seconds since start) as NVML is called."""

    def __init__(
        self,
        sim: SimulatedNVML,
        events: list[ScenarioEvent],
        *,
        elapsed: Callable[[], float],
    ) -> None:
        self.sim = sim
        self._uuids = [gpu.uuid for gpu in sim.gpus]
        """The scenario's GPUs by index, whatever NVML lists now."""
        self._events = sorted(events, key=lambda e: e.at)
        self._elapsed = elapsed
        self._applied = 0

    def __call__(self) -> None:
        now = self._elapsed()
        while self._applied < len(self._events) and self._events[self._applied].at <= now:
            event = self._events[self._applied]
            self._applied += 1
            self._apply(event)

    def play_all(self) -> None:
        """Apply every event at once (a dry run that checks each)."""
        for event in self._events[self._applied :]:
            self._apply(event)
        self._applied = len(self._events)

    def _apply(self, event: ScenarioEvent) -> None:
        sim = self.sim
        if event.nvml is not None:
            sim.init_error = None if event.nvml == "ok" else _known_error(event.nvml)
        if event.gpu is None:
            if event.xid is not None or event.set or event.lost or event.gone:
                raise ValueError(f"event at {event.at}s names no `gpu` for its GPU change")
            sim.changed()
            return
        if event.gpu >= len(self._uuids):
            raise ValueError(
                f"event at {event.at}s names gpu {event.gpu}; there are {len(self._uuids)}"
            )
        position = next(
            (i for i, g in enumerate(sim.gpus) if g.uuid == self._uuids[event.gpu]), None
        )
        if position is None:
            return  # gone from NVML's list: nothing more happens to it
        gpu = sim.gpus[position]
        if event.set:
            gpu = _changed(gpu, event.set, f"event at {event.at}s")
        if event.lost is not None:
            gpu = gpu.model_copy(update={"lost": event.lost})
        sim.gpus[position] = gpu
        if event.xid is not None:
            instance = event.gpu_instance if event.gpu_instance is not None else 0xFFFFFFFF
            sim.xid(position, event.xid, gpu_instance=instance)
        if event.gone:
            del sim.gpus[position]
        sim.changed()


def simulate(
    scenario: Scenario, *, seed: str = "node", elapsed: Callable[[], float] | None = None
) -> Timeline:
    """The scenario's node as a `SimulatedNVML` whose timeline plays on `elapsed` (default:
    real seconds since this call); `Timeline.sim` is the simulation."""
    gpus: list[SimGPU] = []
    for group in scenario.gpus:
        fields = dict(group.model_extra or {})
        if group.count > 1 and {"uuid", "bus_id"} & fields.keys():
            raise ValueError("a GPU group with `count` > 1 cannot set `uuid` or `bus_id`")
        for _ in range(group.count):
            gpu = SimGPU.model_validate(copy.deepcopy(fields))
            gpus.append(identify(gpu, len(gpus), seed))
    init_error = None if scenario.nvml == "ok" else _known_error(scenario.nvml)
    sim = SimulatedNVML(
        gpus, driver=scenario.driver, init_error=init_error, mig_monitor=scenario.mig_monitor
    )
    started = time.monotonic()
    timeline = Timeline(
        sim, scenario.events, elapsed=elapsed or (lambda: time.monotonic() - started)
    )
    sim.on_call = timeline
    return timeline


def _known_error(name: str) -> str:
    error_code(name)  # ValueError naming the bad name
    return name


def _changed(gpu: SimGPU, values: Mapping[str, Any], where: str) -> SimGPU:
    data = gpu.model_dump()
    for path, value in values.items():
        if path.split(".")[0] in ("uuid", "bus_id"):
            raise ValueError(f"{where}: `{path}` is an identity and cannot change")
        *parents, leaf = path.split(".")
        into = data
        for part in parents:
            nested = into.get(part)
            if not isinstance(nested, dict):
                raise ValueError(f"{where}: `{path}` is not a SimGPU field")
            into = nested
        if leaf not in into:
            raise ValueError(f"{where}: `{path}` is not a SimGPU field")
        into[leaf] = value
    try:
        return SimGPU.model_validate(data)
    except pydantic.ValidationError as error:
        raise ValueError(f"{where}: {errors.validation_summary(error)}") from error
