"""A GPU backend driven by a scenario file: GPU models, readings, and events scripted over time.

Serves tests, the demo and clusters without GPUs (`--backend fake --scenario NAME|PATH`).
Scripted events fire on an injected clock (seconds since the backend was built), so a test
moves time forward instead of sleeping. Scenarios shipped with the agent live in `scenarios/`.

Format (YAML; unknown keys are errors, and the whole timeline is played once at load):

    driver: {driver_version: "570.124.06", cuda_version: "12.8", nvml_version: "12.570.124.06"}
    nvml: ok                        # or LibraryNotFound, DriverNotLoaded, ...
    gpus:                           # GPU fields in snake_case, as in `api.models.GPU`
      - count: 8
        name: NVIDIA H100 80GB HBM3
        temperature: 34
        unsupported: [retired_pages] # null, and named in GPU.unsupported
    events:                         # `at` seconds after start; `gpu` is an index
      - {at: 10, gpu: 3, xid: 79, set: {recovery_action: NodeReboot}}
      - {at: 12, gpu: 3, lost: GpuIsLost}    # or `gone: true`; or, without gpu, `nvml: ...`

A GPU's `uuid` and `pci_bus_id` default to values derived from the node name and index, and
so do the UUIDs of MIG instances that name none.
"""

from __future__ import annotations

import copy
import importlib.resources
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from gpu_inventory.api import errors, models
from gpu_inventory.nodeagent.backend import (
    DeviceReading,
    NodeReading,
    NVMLUnavailableError,
    XidSeen,
)

NVMLState = Literal[
    "ok", "LibraryNotFound", "DriverNotLoaded", "LibRmVersionMismatch", "Uninitialized"
]
_NVML_MESSAGES: dict[str, str] = {
    "LibraryNotFound": "NVML Shared Library Not Found",
    "DriverNotLoaded": "Driver Not Loaded",
    "LibRmVersionMismatch": "RM has detected an NVML/RM version mismatch.",
    "Uninitialized": "Uninitialized",
}
_IDENTITY = ("uuid", "index", "name", "pci_bus_id")
_UUID_NAMESPACE = uuidlib.UUID("6f1c8a52-6a8e-4b8e-9a57-0c1d5e0f6a11")


class ScenarioError(ValueError):
    """A scenario file that cannot be found or does not fit the format; says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioGPUs(_Strict):
    """`count` identical GPUs. Any other key is a `GPU` field (snake_case), e.g. `temperature`."""

    model_config = ConfigDict(extra="allow")

    count: Annotated[int, Field(ge=1, le=1024)] = 1
    """How many such GPUs; with more than one, `uuid` and `pci_bus_id` must be left out."""
    unsupported: list[str] = []
    """Fields the device does not support (snake_case paths such as `ecc.volatile_corrected`):
    read as null (or the empty default) and named in `GPU.unsupported`."""


class ScenarioEvent(_Strict):
    """Something that happens `at` seconds after start, to GPU `gpu` (by index) or to NVML."""

    at: Annotated[float, Field(ge=0)]
    gpu: Annotated[int, Field(ge=0)] | None = None
    xid: Annotated[int, Field(ge=0, le=65_535)] | None = None
    set: dict[str, Any] = {}
    """New readings, by snake_case path: `{ecc.volatile_corrected: 12, temperature: 80}`."""
    lost: Literal["GpuIsLost", "ResetRequired"] | None = None
    """From now on NVML answers every call about this GPU with this error."""
    gone: bool = False
    """From now on NVML no longer lists this GPU."""
    nvml: NVMLState | None = None
    """NVML as a whole goes away (an error name) or comes back (`ok`)."""


class Scenario(_Strict):
    description: str = ""
    driver: models.DriverInfo = models.DriverInfo()
    nvml: NVMLState = "ok"
    gpus: list[ScenarioGPUs] = []
    events: list[ScenarioEvent] = []


def scenario_names() -> list[str]:
    """The scenarios shipped with the agent."""
    folder = importlib.resources.files("gpu_inventory.nodeagent") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_scenario(ref: str | Path) -> tuple[str, Scenario]:
    """Load a scenario by path, or by the name of a shipped one (`t4-single`); (name, scenario)."""
    path = Path(ref)
    if path.is_file():
        text, name = path.read_text(), path.stem
    else:
        name = path.name.removesuffix(".yaml")
        shipped = importlib.resources.files("gpu_inventory.nodeagent") / "scenarios"
        candidate = shipped / f"{name}.yaml"
        by_name = str(ref) in (name, f"{name}.yaml")
        if not by_name or not candidate.is_file():
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
        _dry_run(scenario)
    except yaml.YAMLError as error:
        raise ScenarioError(f"scenario {str(ref)!r} is not valid YAML: {error}") from error
    except pydantic.ValidationError as error:
        problems = errors.validation_summary(error)
        raise ScenarioError(f"scenario {str(ref)!r} is invalid: {problems}") from error
    except (KeyError, TypeError, ValueError) as error:
        raise ScenarioError(f"scenario {str(ref)!r} is invalid: {error}") from error
    return name, scenario


class _Device:
    """One simulated GPU: its readings (snake_case dict) and what NVML says about it."""

    def __init__(self, data: dict[str, Any], unsupported: list[str]) -> None:
        self.data = data
        self.unsupported = list(unsupported)
        self.lost: Literal["GpuIsLost", "ResetRequired"] | None = None
        self.gone = False

    def reading(self) -> DeviceReading:
        if self.lost is not None:
            identity = {key: self.data[key] for key in _IDENTITY if key in self.data}
            return DeviceReading(models.GPU.model_validate(identity), lost=self.lost)
        data = copy.deepcopy(self.data)
        for path in self.unsupported:
            _unset(data, path)
        data["unsupported"] = [_marker(path) for path in self.unsupported]
        return DeviceReading(models.GPU.model_validate(data))


class FakeBackend:
    """`GPUBackend` over a scenario. `elapsed()` is seconds since start (real time by default)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: str = "node",
        elapsed: Callable[[], float] | None = None,
    ) -> None:
        self.scenario = scenario
        self._devices = _devices(scenario, seed)
        self._events = sorted(scenario.events, key=lambda e: e.at)
        self._applied = 0
        self._xids: list[XidSeen] = []
        self._nvml: str = scenario.nvml
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._started = time.monotonic()
        self._elapsed: Callable[[], float] = elapsed or self._since_built
        self.started = False

    def _since_built(self) -> float:
        return time.monotonic() - self._started

    def start(self) -> None:
        with self._lock:
            self._advance()
            self._check_nvml()
            self.started = True
            self._wake.clear()

    def stop(self) -> None:
        self.started = False
        self._wake.set()

    def read(self) -> NodeReading:
        with self._lock:
            self._advance()
            self._check_nvml()
            devices = tuple(d.reading() for d in self._devices if not d.gone)
        return NodeReading(driver=self.scenario.driver, devices=devices)

    def wait_xids(self, timeout: float) -> list[XidSeen]:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            with self._lock:
                self._advance()
                self._check_nvml()
                if self._xids:
                    due, self._xids = self._xids, []
                    return due
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._wake.wait(min(remaining, 0.05)):
                return []

    # --- timeline -------------------------------------------------------------------------------

    def _check_nvml(self) -> None:
        if self._nvml != "ok":
            raise NVMLUnavailableError(f"NVML: {_NVML_MESSAGES[self._nvml]}")

    def _advance(self) -> None:
        now = self._elapsed()
        while self._applied < len(self._events) and self._events[self._applied].at <= now:
            event = self._events[self._applied]
            self._applied += 1
            _apply(event, self._devices, on_xid=self._xids.append, nvml=self._set_nvml)

    def _set_nvml(self, state: str) -> None:
        self._nvml = state


def _devices(scenario: Scenario, seed: str) -> list[_Device]:
    devices: list[_Device] = []
    for group in scenario.gpus:
        fields = dict(group.model_extra or {})
        if group.count > 1 and {"uuid", "pci_bus_id"} & fields.keys():
            raise ValueError("a GPU group with `count` > 1 cannot set `uuid` or `pci_bus_id`")
        if "index" in fields:
            raise ValueError("`index` is the GPU's position in the list; do not set it")
        for _ in range(group.count):
            index = len(devices)
            data = copy.deepcopy(fields)
            data["index"] = index
            # Stable per node and index, so each simulated node has GPUs of its own.
            data.setdefault("uuid", f"GPU-{uuidlib.uuid5(_UUID_NAMESPACE, f'{seed}/{index}')}")
            data.setdefault("pci_bus_id", f"00000000:{(0x18 + 0x10 * index) % 0x100:02X}:00.0")
            instances = (data.get("mig") or {}).get("instances") or []
            for slot, instance in enumerate(instances):
                if isinstance(instance, dict):
                    name = f"{seed}/{index}/mig/{slot}"
                    instance.setdefault("uuid", f"MIG-{uuidlib.uuid5(_UUID_NAMESPACE, name)}")
            devices.append(_Device(data, group.unsupported))
    return devices


def _apply(
    event: ScenarioEvent,
    devices: list[_Device],
    *,
    on_xid: Callable[[XidSeen], None],
    nvml: Callable[[str], None],
) -> None:
    if event.nvml is not None:
        nvml(event.nvml)
    if event.gpu is None:
        if event.xid is not None or event.set or event.lost or event.gone:
            raise ValueError(f"event at {event.at}s names no `gpu` for its GPU change")
        return
    if event.gpu >= len(devices):
        raise ValueError(f"event at {event.at}s names gpu {event.gpu}; there are {len(devices)}")
    device = devices[event.gpu]
    for path, value in event.set.items():
        if path.split(".")[0] in _IDENTITY:
            raise ValueError(f"event at {event.at}s: `{path}` is an identity and cannot change")
        _put(device.data, path, value)
    if event.lost is not None:
        device.lost = event.lost
    if event.gone:
        device.gone = True
    if event.xid is not None:
        on_xid(XidSeen(uuid=device.data["uuid"], xid=event.xid))


def _dry_run(scenario: Scenario) -> None:
    """Play the whole timeline once so a bad path or value fails at load, not mid-run."""
    devices = _devices(scenario, "dry-run")
    for index, device in enumerate(devices):
        _check_keys(device.data, models.GPU, f"gpu {index}")
        _check_unsupported(device.unsupported)
        device.reading()
    for event in sorted(scenario.events, key=lambda e: e.at):
        _apply(event, devices, on_xid=lambda _: None, nvml=lambda _: None)
        if event.gpu is not None:
            _check_keys(devices[event.gpu].data, models.GPU, f"event at {event.at}s")
            devices[event.gpu].reading()


def _check_keys(data: Mapping[str, Any], model: type[BaseModel], where: str) -> None:
    """Unknown keys are errors here (the API models drop them silently)."""
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None or key in ("xids", "health", "unsupported"):
            raise ValueError(f"{where}: `{key}` is not a field of {model.__name__}")
        nested = _model_of(field.annotation)
        if nested is not None and isinstance(value, Mapping):
            _check_keys(value, nested, f"{where}.{key}")
        if nested is not None and isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    _check_keys(item, nested, f"{where}.{key}[]")


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model inside `Model`, `Model | None` or `list[Model]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _check_unsupported(paths: list[str]) -> None:
    for path in paths:
        _field_default(path)


def _field_default(path: str) -> Any:
    """The value an unsupported field reads as: None when it is nullable, else its default."""
    model: type[BaseModel] = models.GPU
    parts = path.split(".")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None or part in (*_IDENTITY, "xids", "health", "unsupported"):
            raise ValueError(f"`{path}` is not a GPU reading")
        if depth == len(parts) - 1:
            return None if field.default is None else copy.deepcopy(field.default)
        nested = field.annotation
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            raise ValueError(f"`{path}`: `{part}` has no fields")
        model = nested
    raise ValueError(f"`{path}` is empty")


def _unset(data: dict[str, Any], path: str) -> None:
    _put(data, path, _field_default(path), check=False)


def _put(data: dict[str, Any], path: str, value: Any, *, check: bool = True) -> None:
    if check:
        _field_default(path)  # a known reading
    *parents, leaf = path.split(".")
    into = data
    for part in parents:
        nested = into.get(part)
        if not isinstance(nested, dict):
            nested = into[part] = {}
        into = nested
    into[leaf] = value


def _marker(path: str) -> str:
    """`ecc.volatile_corrected` -> `ecc.volatileCorrected`: the wire name in `GPU.unsupported`."""
    return ".".join(to_camel(part) for part in path.split("."))
