"""One table of GPUInventory states, judged by Argo CD's health script, kstatus and Flux.

Every row runs through `manifests/argocd/health.lua` (Lua 5.1 as Argo CD runs custom health
checks: no string or math library, only os.time/os.date; util/lua/lua.go, oslib_safe.go), the
real kstatus library (`sigs.k8s.io/cli-utils` v0.37.2) and Flux's own evaluator of the shipped
`manifests/flux/health-check.yaml` (`github.com/fluxcd/pkg/runtime/cel`), both through
hack/tools/kstatus-check. Where the verdicts differ, the row says why; nothing else may differ.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lupa import lua51

from gpu_inventory.api import constants
from gpu_inventory.testing.binaries import REPO_ROOT, ensure_tool

SCRIPT = (REPO_ROOT / "manifests" / "argocd" / "health.lua").read_text()
FLUX_EXPRS = REPO_ROOT / "manifests" / "flux" / "health-check.yaml"
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

# Argo CD's sandbox for health scripts from argocd-cm (UseOpenLibs false): base, package,
# table and a safe os with time() and date() only; no string library, so no string methods.
_SANDBOX = """
local now, date = ...
debug.setmetatable("", nil)
string, math, io, coroutine, debug = nil, nil, nil, nil, nil
os = {time = function() return now end, date = date}
"""

SAME = {"Healthy": "Current", "Progressing": "InProgress", "Degraded": "Failed"}
"""An Argo CD verdict and the kstatus/Flux verdict that means the same."""


def argocd_health(obj: dict[str, Any], *, now: datetime = NOW) -> tuple[str, str]:
    """Run the script as Argo CD does: a global `obj`, a returned table."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return runtime.table_from({k: convert(v) for k, v in value.items()})
        if isinstance(value, list):
            return runtime.table_from([convert(v) for v in value])
        return value

    runtime.globals().obj = convert(obj)
    runtime.execute(_SANDBOX, int(now.timestamp()), runtime.globals().os.date)
    result = runtime.execute(SCRIPT)
    return result["status"], result["message"]


def library_verdicts(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """kstatus.Compute and Flux's evaluator of our healthCheckExprs, per object."""
    checker = ensure_tool("kstatus-check")
    result = subprocess.run(
        [str(checker), f"-flux-exprs={FLUX_EXPRS}"],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    verdicts: list[dict[str, str]] = json.loads(result.stdout)
    return verdicts


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def inventory(
    *conditions: tuple[str, str, str],
    generation: int = 1,
    observed: int | None = 1,
    synced_ago: float | None = 20,
    deleting: bool = False,
    with_status: bool = True,
) -> dict[str, Any]:
    """GPUInventory/cluster with `conditions` as (type, status, reason), in the operator's order."""
    metadata: dict[str, Any] = {"name": "cluster", "generation": generation}
    if deleting:
        metadata["deletionTimestamp"] = _time(NOW - timedelta(seconds=5))
        metadata["finalizers"] = ["example.com/keep"]
    obj: dict[str, Any] = {
        "apiVersion": constants.API_VERSION,
        "kind": constants.INVENTORY_KIND,
        "metadata": metadata,
    }
    if not with_status:
        return obj
    status: dict[str, Any] = {
        "conditions": [
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": f"{reason} says so",
                "lastTransitionTime": _time(NOW - timedelta(hours=1)),
            }
            for kind, value, reason in conditions
        ]
    }
    if observed is not None:
        status["observedGeneration"] = observed
    if synced_ago is not None:
        status["lastSyncTime"] = _time(NOW - timedelta(seconds=synced_ago))
    obj["status"] = status
    return obj


def with_status(obj: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """`obj` with some status fields replaced, e.g. by values of the wrong type."""
    return {**obj, "status": {**obj["status"], **fields}}


READY = ("Ready", "True", "InventoryCurrent")
HEALTHY_FLEET = ("Degraded", "False", "AllHealthy")
RECONCILED = ("Reconciling", "False", "Reconciled")
NOT_STALLED = ("Stalled", "False", "NotStalled")
CURRENT = (READY, HEALTHY_FLEET, RECONCILED, NOT_STALLED)


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    obj: dict[str, Any]
    argocd: str
    kstatus: str
    flux: str
    why_they_differ: str = ""


ROWS = (
    Row("current", inventory(*CURRENT), "Healthy", "Current", "Current"),
    Row(
        "fleet-degraded-is-still-healthy",
        inventory(READY, ("Degraded", "True", "UnhealthyGPUs"), RECONCILED, NOT_STALLED),
        "Healthy",
        "Current",
        "Current",
    ),
    Row(
        "initial-sync",
        inventory(
            ("Ready", "False", "Indexing"),
            HEALTHY_FLEET,
            ("Reconciling", "True", "InitialSync"),
            NOT_STALLED,
        ),
        "Progressing",
        "InProgress",
        "InProgress",
    ),
    Row(
        "spec-changed",
        inventory(READY, HEALTHY_FLEET, ("Reconciling", "True", "SpecChanged"), NOT_STALLED),
        "Progressing",
        "InProgress",
        "InProgress",
    ),
    Row(
        "generation-not-observed",
        inventory(*CURRENT, generation=2, observed=1),
        "Progressing",
        "InProgress",
        "InProgress",
    ),
    Row(
        "stalled-forbidden",
        inventory(
            ("Ready", "False", "WriteFailed"),
            HEALTHY_FLEET,
            RECONCILED,
            ("Stalled", "True", "Forbidden"),
        ),
        "Degraded",
        "Failed",
        "Failed",
    ),
    Row(
        "reconciling-listed-before-stalled",
        inventory(
            ("Ready", "False", "Indexing"),
            HEALTHY_FLEET,
            ("Reconciling", "True", "InitialSync"),
            ("Stalled", "True", "Forbidden"),
        ),
        "Progressing",
        "InProgress",
        "InProgress",
    ),
    Row(
        "ready-false",
        inventory(("Ready", "False", "WriteFailed"), HEALTHY_FLEET, RECONCILED, NOT_STALLED),
        "Progressing",
        "InProgress",
        "InProgress",
    ),
    Row(
        "ready-unknown",
        inventory(("Ready", "Unknown", "Indexing"), HEALTHY_FLEET, RECONCILED, NOT_STALLED),
        "Progressing",
        "InProgress",
        "InProgress",
    ),
    Row(
        "a-new-reason-changes-nothing",
        inventory(("Ready", "True", "SomeFutureReason"), HEALTHY_FLEET, RECONCILED, NOT_STALLED),
        "Healthy",
        "Current",
        "Current",
    ),
    Row(
        "being-deleted",
        inventory(*CURRENT, deleting=True),
        "Progressing",
        "Terminating",
        "Current",
        "Argo CD has no Terminating health (Progressing is its nearest); Flux's CEL evaluator "
        "checks no deletionTimestamp, and Flux waits for deletions itself",
    ),
    Row(
        "no-status-yet",
        inventory(with_status=False),
        "Progressing",
        "Current",
        "Error",
        "kstatus calls an object without conditions Current; Flux's CEL cannot name a missing "
        "status, so it retries until its timeout (InProgress in effect)",
    ),
    Row(
        "status-too-old",
        inventory(*CURRENT, synced_ago=constants.STATUS_MAX_AGE_SECONDS + 60),
        "Degraded",
        "Current",
        "Current",
        "kstatus and Flux's CEL have no clock: the status-age rule lives in the Lua script "
        "and the GPUInventoryStatusStale alert",
    ),
    Row(
        "status-from-the-future",
        inventory(*CURRENT, synced_ago=-(constants.STATUS_MAX_AGE_SECONDS + 60)),
        "Degraded",
        "Current",
        "Current",
        "no clock in kstatus or Flux's CEL (as above)",
    ),
    Row(
        "ready-without-lastsynctime",
        inventory(*CURRENT, synced_ago=None),
        "Progressing",
        "Current",
        "InProgress",
        "kstatus reads only conditions; our Flux snippet, like the Lua script, wants a "
        "lastSyncTime before it calls the status current",
    ),
    Row(
        "lastsynctime-with-fractional-seconds",
        with_status(inventory(*CURRENT), lastSyncTime=_time(NOW)[:-1] + ".250Z"),
        "Degraded",
        "Current",
        "Current",
        "the script compares times as 20-character strings and refuses any other form; the "
        "CRD's pattern on lastSyncTime keeps other forms out, kstatus and Flux never read it",
    ),
    Row(
        "lastsynctime-not-a-string",
        with_status(inventory(*CURRENT), lastSyncTime=1795000000),
        "Degraded",
        "Current",
        "Current",
        "as above: only the script reads lastSyncTime",
    ),
    Row(
        "conditions-without-reason-or-message",
        with_status(
            inventory(),
            conditions=[
                {"type": "Ready", "status": "True"},
                {"type": "Reconciling", "status": "False"},
            ],
        ),
        "Healthy",
        "Current",
        "Current",
    ),
)


def test_argocd_kstatus_and_flux_agree_on_every_state() -> None:
    verdicts = library_verdicts([row.obj for row in ROWS])
    table = []
    for row, verdict in zip(ROWS, verdicts, strict=True):
        argocd, _ = argocd_health(row.obj)
        flux = verdict["flux"].split(":", 1)[0]
        table.append((row.name, argocd, verdict["kstatus"], flux))
    assert table == [(r.name, r.argocd, r.kstatus, r.flux) for r in ROWS]
    for row in ROWS:
        agree = SAME[row.argocd] == row.kstatus == row.flux
        assert agree == (not row.why_they_differ), row.name


def test_the_status_age_boundary_is_the_apis() -> None:
    """Exactly STATUS_MAX_AGE_SECONDS old is still current; one second more is not."""
    limit = constants.STATUS_MAX_AGE_SECONDS
    assert argocd_health(inventory(*CURRENT, synced_ago=limit))[0] == "Healthy"
    assert argocd_health(inventory(*CURRENT, synced_ago=limit + 1))[0] == "Degraded"
    assert argocd_health(inventory(*CURRENT, synced_ago=-limit))[0] == "Healthy"
    assert argocd_health(inventory(*CURRENT, synced_ago=-limit - 1))[0] == "Degraded"


@pytest.mark.parametrize(
    "now",
    [
        datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),  # a leap day, one second to midnight
        datetime(2026, 12, 31, 23, 58, 30, tzinfo=UTC),  # the year turns inside the window
        datetime(2100, 3, 1, 0, 1, 0, tzinfo=UTC),  # 2100 is not a leap year
    ],
)
def test_times_are_compared_correctly_across_calendar_edges(now: datetime) -> None:
    """The script builds RFC 3339 strings by arithmetic (Argo CD gives it no string library)."""
    fresh = inventory(*CURRENT)
    fresh["status"]["lastSyncTime"] = _time(now - timedelta(seconds=170))
    old = inventory(*CURRENT)
    old["status"]["lastSyncTime"] = _time(now - timedelta(seconds=190))
    assert argocd_health(fresh, now=now)[0] == "Healthy"
    assert argocd_health(old, now=now)[0] == "Degraded"


def test_the_message_names_the_fleet_problem_and_the_stall() -> None:
    fleet = inventory(READY, ("Degraded", "True", "UnhealthyGPUs"), RECONCILED, NOT_STALLED)
    assert argocd_health(fleet) == (
        "Healthy",
        "inventory current; fleet UnhealthyGPUs: UnhealthyGPUs says so",
    )
    stalled = inventory(
        ("Ready", "False", "WriteFailed"),
        HEALTHY_FLEET,
        RECONCILED,
        ("Stalled", "True", "Forbidden"),
    )
    assert argocd_health(stalled) == ("Degraded", "Stalled: Forbidden: Forbidden says so")
    syncing = inventory(
        ("Ready", "False", "Indexing"),
        HEALTHY_FLEET,
        ("Reconciling", "True", "InitialSync"),
        NOT_STALLED,
    )
    assert argocd_health(syncing) == (
        "Progressing",
        "Reconciling: InitialSync: InitialSync says so",
    )
    old = inventory(*CURRENT, synced_ago=600)
    status, message = argocd_health(old)
    assert status == "Degraded"
    assert message.startswith(f"status not refreshed since {_time(NOW - timedelta(seconds=600))}")


@pytest.mark.parametrize(
    "status",
    [
        {"lastSyncTime": {"seconds": 1}},
        {"lastSyncTime": True},
        {"conditions": [{"type": "Stalled", "status": "True"}]},
        {"conditions": [{"type": "Reconciling", "status": "True", "reason": 7, "message": 8}]},
        {"conditions": ["Ready", None, 3]},
        {"conditions": "Ready"},
        {"conditions": [{"type": "Ready", "status": "True", "reason": {"a": 1}}]},
        {"observedGeneration": "one"},
    ],
    ids=repr,
)
def test_a_malformed_status_gets_a_verdict_never_a_script_error(status: dict[str, Any]) -> None:
    """Argo CD shows a health script's runtime error instead of any health; a status written by
    something other than the operator must still get one."""
    obj = inventory(*CURRENT)
    obj["status"].update(status)
    verdict, message = argocd_health(obj)
    assert verdict in SAME
    assert message
