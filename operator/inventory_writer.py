"""The GPUInventory's one writer: compute the desired status, patch only the difference.

Runs as one asyncio task (not a kopf daemon: a daemon lives on an object, so it could not
create a missing GPUInventory, and it would put a finalizer on it). One pass:

1. only the Lease holder writes, and every write is fenced (`kubeapi.KubeApi._write`);
2. make sure `GPUInventory/cluster` exists (create it, or re-create it after a deletion);
3. while a listing or a spec refresh is under way, write only the conditions that say so
   (`status.waiting_status`); numbers are published from complete snapshots only;
4. otherwise compute the whole status from the node facts and merge-patch the difference,
   conditional on the resourceVersion it was diffed against (409: re-read, recompute, retry);
   `lastSyncTime` moves with every write, and at least once a minute;
5. after a spec change, read the kinds it reshapes again (`refresh`).

Failures: no answer or a 5xx retries with a short exponential backoff; a refusal (403, 422,
the object too large for etcd) is retried with a long one (1 s doubling to minutes) and shown
as Stalled where it can be written. The GPUNode writer is a separate task, so neither ever
waits behind the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from gpu_inventory.api import constants, objects
from gpu_inventory.api.models import GPUInventoryStatus
from gpu_inventory.operator import patches, projections, status, verdicts
from gpu_inventory.operator.aggregates import FactsCache
from gpu_inventory.operator.dra import feeding as dra_feeding
from gpu_inventory.operator.dra import projections as dra_projections
from gpu_inventory.operator.kubeapi import ApiError
from gpu_inventory.operator.store import DRA_KINDS, Kind, Phase
from gpu_inventory.operator.writing import Shared, Writer

logger = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES: Final = 3
PATCH: Final = "patch gpuinventories/status"
CREATE: Final = "create gpuinventories"
REFRESH_AFTER: Final = timedelta(seconds=constants.STATUS_REFRESH_SECONDS)


class InventoryApi(Protocol):
    """What this writer needs from the API server (`kubeapi.KubeApi`, or a fake in tests)."""

    def get_inventory(self) -> dict[str, Any] | None: ...
    def create_inventory(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def patch_inventory_status(self, patch: Mapping[str, Any]) -> dict[str, Any]: ...
    def iter_objects(self, kind: Kind, *, chunk: int = 500) -> Iterator[dict[str, Any]]: ...


@dataclasses.dataclass(slots=True)
class PassReport:
    """What one pass sent (for tests and logs)."""

    patches: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    created: bool = False
    refreshed: list[str] = dataclasses.field(default_factory=list)


class InventoryWriter(Writer):
    """Writes `GPUInventory/cluster` status. `run()` forever; `run_pass()` once (tests)."""

    name = "inventory writer"

    def __init__(self, shared: Shared, api: InventoryApi) -> None:
        super().__init__(shared)
        self.api = api
        self.facts = FactsCache()
        self.latest_status: GPUInventoryStatus | None = None
        """The complete status the CR holds now, as this writer last wrote or confirmed it
        (rows cut by `maxNodeRows`): the metrics never run ahead of the CR."""
        self.last_write_time: float | None = None
        """Unix time of the last successful status write."""
        self.store.on_inventory_change = self._wake.set

    def pending(self) -> bool:
        return self.store.inventory_dirty

    def until_due(self) -> float:
        """A periodic re-evaluation, and while this replica writes current numbers: facts
        expiring, `lastSyncTime` to refresh, a refused write to retry. Only moments a pass can
        act on count, so nothing spins on a due time it cannot move."""
        due = [self.config.resync_interval]
        now, wall = self.clock(), self.wallclock()
        retry = self.backoff.next_retry()
        if retry is not None and retry > now:
            due.append(retry - now)
        if not self.is_leader() or self.store.phase() is not Phase.CURRENT:
            return min(due)
        expiry = self.facts.next_expiry()
        if expiry is not None:
            due.append((expiry - wall).total_seconds())
        written = self._written_at()
        if written is not None and self.backoff.ready(PATCH, now=now):
            due.append((written + REFRESH_AFTER - wall).total_seconds())
        return min(due)

    def last_written(self) -> float | None:
        """Unix time of the status' last write: this writer's own, or else (a new leader whose
        predecessor's status is still current) the `lastSyncTime` the CR carries."""
        if self.last_write_time is not None:
            return self.last_write_time
        synced = self._written_at()
        return synced.timestamp() if synced is not None else None

    def _written_at(self) -> datetime | None:
        inventory = self.store.inventory
        current = inventory.status if inventory is not None else None
        return current.last_sync_time if current is not None else None

    # --- one pass -------------------------------------------------------------------------------

    async def run_pass(self) -> PassReport:
        report = PassReport()
        self.store.inventory_dirty = False
        leader = self.is_leader()
        if self.metrics is not None:
            self.metrics.leader.set(1 if leader else 0)
            self.metrics.set_objects(self.store.counts())
        if not leader:
            self._leading = False
            self.store.first_pod_event = None  # a standby's latency clock starts at takeover
            return report
        if not self._leading:
            self._leading = True
            self.facts = FactsCache()  # taking over: trust nothing computed before
        try:
            if not await self._ensure_inventory(report):
                return report
            phase = self.store.phase()
            await self._write(phase, report)
            if phase is Phase.REFRESHING:
                await self._refresh(report)
        except BaseException:
            self.store.inventory_dirty = True  # the next pass tries again
            raise
        return report

    async def _write(self, phase: Phase, report: PassReport) -> None:
        if phase is Phase.CURRENT:
            self._update_facts()  # views of agents turning stale follow even while refused
        if not self.backoff.ready(PATCH, now=self.clock()):
            return
        first_pod_event = self.store.first_pod_event
        self.store.first_pod_event = None
        try:
            for _attempt in range(MAX_CONFLICT_RETRIES):
                desired, patch = self._desired_patch(phase)
                if not patch:
                    self.latest_status = desired  # the CR already says it
                    return
                written = await self._send(patch, report)
                if written is not None:
                    if written:
                        self.latest_status = desired
                    break
            else:
                logger.warning("GPUInventory/cluster kept changing under the writer; retrying")
                self.store.mark_inventory()
                return
        except BaseException:
            if self.store.first_pod_event is None:
                self.store.first_pod_event = first_pod_event
            raise
        if phase is Phase.CURRENT and first_pod_event is not None and self.metrics is not None:
            self.metrics.observe_latency(self.clock() - first_pod_event)

    def _desired_patch(self, phase: Phase) -> tuple[GPUInventoryStatus | None, dict[str, Any]]:
        """The status to publish (None while nothing complete was ever published) and the patch
        that turns the CR into it."""
        inventory = self.store.inventory
        assert inventory is not None
        existing = inventory.status
        now = self.wallclock()
        health = self.health(phase)
        if phase is not Phase.CURRENT:
            desired = status.waiting_status(
                existing, generation=inventory.generation, health=health, now=now
            )
            # The metrics show what the CR shows: the last numbers, and why they are old.
            shown = desired if existing is not None and existing.last_sync_time else None
            if existing is None:  # nothing published yet: no zeros, only why there is nothing
                return shown, self._patch_wire(_only_conditions(desired.to_wire()))
            return shown, self._patch(desired)
        desired = status.desired_status(
            self.facts,
            inventory.spec,
            generation=inventory.generation,
            existing=existing,
            health=health,
            malformed_pods=self.store.malformed_pods(),
            skipped_pods=self.store.skipped_pods(),
            last_sync_time=existing.last_sync_time if existing is not None else None,
            now=now,
        )
        patch = self._patch(desired)
        synced = desired.last_sync_time
        if patch or synced is None or now - synced >= REFRESH_AFTER:
            desired = desired.model_copy(update={"last_sync_time": now.replace(microsecond=0)})
            patch = self._patch(desired)
        return desired, patch

    def _update_facts(self) -> None:
        inventory = self.store.inventory
        assert inventory is not None
        changed = self.facts.update(
            nodes=self.store.nodes.live,
            gpunodes=self.store.gpunodes.live,
            allocated=self.store.allocated,
            dirty=self.store.take_facts_dirty(),
            spec=inventory.spec,
            now=self.wallclock(),
            dra=self.store.dra_counts,
        )
        self.store.mark_views(changed)  # e.g. an agent turned stale: its view says so

    def _patch(self, desired: GPUInventoryStatus) -> dict[str, Any]:
        return self._patch_wire(desired.to_wire())

    def _patch_wire(self, wanted: Mapping[str, Any]) -> dict[str, Any]:
        inventory = self.store.inventory
        assert inventory is not None
        return patches.inventory_status_patch(
            inventory.status_wire, wanted, resource_version=inventory.resource_version
        )

    async def _send(self, patch: dict[str, Any], report: PassReport) -> bool | None:
        """Send one patch: True when written, False when given up for now, None to recompute
        and retry (a conflict, or written after refusals: once more with conditions that say
        it works again)."""
        try:
            body = await self.call(self.api.patch_inventory_status, patch)
        except ApiError as error:
            if error.status == 409:
                self._count("conflict")
                fresh = await self.call(self.api.get_inventory)
                self.store.inventory_answer(_project(fresh))
                return False if fresh is None else None  # gone: the next pass creates it
            if error.status == 404:
                self._count("gone")
                logger.warning("GPUInventory/cluster is gone; re-creating it")
                self.store.inventory_answer(None)
                return False
            await self._refused(PATCH, error)
            return False
        self._count("ok")
        report.patches.append(patch)
        self.last_write_time = time.time()
        self.store.inventory_answer(_project(body))
        # Accepted after refusals: the status just written still says why it failed. Once
        # more, with conditions that say it works again.
        return None if self.accepted(PATCH) else True

    # --- refusals -------------------------------------------------------------------------------

    async def _refused(self, what: str, error: ApiError) -> None:
        self.refused(what, error, kind="GPUInventory")
        if what == PATCH and error.status != 403:
            await self._report_refusal()

    async def _report_refusal(self) -> None:
        """The status itself was refused (too large, or invalid for the installed CRD): write
        only the conditions, which are small and always valid, so users see why."""
        inventory = self.store.inventory
        if inventory is None:
            return
        desired = status.waiting_status(
            inventory.status,
            generation=inventory.generation,
            health=self.health(Phase.CURRENT),
            now=self.wallclock(),
        )
        patch = self._patch(desired)
        if not patch:
            return
        try:
            body = await self.call(self.api.patch_inventory_status, patch)
        except ApiError as second:
            logger.error("could not even report the refusal in the conditions: %s", second)
            return
        self.store.inventory_answer(_project(body))

    def health(self, phase: Phase) -> verdicts.OperatorHealth:
        inventory = self.store.inventory
        return verdicts.OperatorHealth(
            phase=phase,
            waiting_for=tuple(self.store.waiting_for()),
            refusals=self.refusals.all(),
            spec_error=inventory.spec_error if inventory is not None else "",
            dra_refused=self.store.dra_refused,
        )

    # --- the object itself ----------------------------------------------------------------------

    async def _ensure_inventory(self, report: PassReport) -> bool:
        """Whether `GPUInventory/cluster` exists; creates it once its listing says it does not
        (a GitOps tool or a user may create it too: 409 is fine)."""
        if self.store.inventory is not None:
            return True
        if not self.store.inventory_table.synced:
            return False  # its listing is under way
        if not self.backoff.ready(CREATE, now=self.clock()):
            return False
        body: dict[str, Any] | None
        try:
            body = await self.call(self.api.create_inventory, objects.inventory_object())
        except ApiError as error:
            if error.status != 409:
                await self._refused(CREATE, error)
                return False
            body = await self.call(self.api.get_inventory)
        else:
            logger.info("created GPUInventory/cluster")
            report.created = True
            self.accepted(CREATE)
            self._count("created")
        self.store.inventory_answer(_project(body))
        return self.store.inventory is not None

    # --- after a spec change --------------------------------------------------------------------

    async def _refresh(self, report: PassReport) -> None:
        """Read again, with one LIST each, the kinds the new spec projects differently."""
        for kind in sorted(self.store.pending_refresh, key=lambda k: k.value):
            projector = self.store.projector
            if not self.store.begin_refresh(kind):
                continue  # its own listing is under way and re-reads it anyway
            logger.info("the spec changed how %s are counted; reading them again", kind.value)
            try:
                listed = await asyncio.to_thread(self._list, kind, projector)
            except BaseException:
                self.store.abort_refresh(kind)
                raise
            if self.store.projector != projector:
                self.store.abort_refresh(kind)  # changed again meanwhile: read once more
                continue
            self.store.finish_refresh(kind, listed, now=self.clock())
            report.refreshed.append(kind.value)

    def _list(self, kind: Kind, projector: projections.Projector) -> dict[str, object]:
        listed: dict[str, object] = {}
        for body in self.api.iter_objects(kind, chunk=self.config.list_chunk_size):
            if kind in DRA_KINDS:
                with contextlib.suppress(dra_projections.MalformedError):  # logged by its event
                    if (value := dra_feeding.project(kind, body, projector)) is not None:
                        listed[dra_feeding.key_of(kind, body)] = value
            elif kind is Kind.PODS:
                pod = projections.project_pod(body, projector.matcher)
                if pod is not None:
                    listed[projections.pod_key(body)] = pod
            else:
                node = projections.project_node(body, projector)
                listed[node.name] = node
        return listed

    def _count(self, result: str) -> None:
        self.count("GPUInventory", result)


def _only_conditions(wire: Mapping[str, Any]) -> dict[str, Any]:
    return {key: wire[key] for key in ("observedGeneration", "conditions") if key in wire}


def _project(body: Mapping[str, Any] | None) -> projections.InventoryProjection | None:
    return projections.project_inventory(body) if body is not None else None
