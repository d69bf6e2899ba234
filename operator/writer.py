"""The one writer: coalesce changes, compute the desired state, patch only the difference.

Runs as one asyncio task started by `main.configure()` (not a kopf daemon: a daemon lives on
an object, so it could not create a missing GPUInventory, and it would put a finalizer on
it). Nothing else in the operator writes.

One pass:
1. close listings that went quiet; after a relist, drop what the API no longer has (`sweep`);
2. make sure the `cluster` GPUInventory exists (create it, or re-create it after a deletion);
3. compute its desired status (`status.desired_status`) and merge-patch the difference,
   conditional on the resourceVersion we diffed against (409: re-read, recompute, retry);
4. create the GPUNode of every GPU node that lacks one, and merge-patch each changed
   `status.kubernetes` (bounded per pass, so the inventory never waits behind them).

Errors: 403 marks the write forbidden (Stalled=Forbidden, logged once), 422 is logged with
the server's message (Ready=WriteFailed), 404 means the object went away, and no answer at
all (`UnavailableError`) puts the changes back and retries with exponential backoff.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from gpu_inventory.api import objects
from gpu_inventory.api.models import GPUInventorySpec, GPUInventoryStatus
from gpu_inventory.operator import patches, projections, status
from gpu_inventory.operator.config import OperatorConfig
from gpu_inventory.operator.kubeapi import ApiError, UnavailableError
from gpu_inventory.operator.metrics import Metrics
from gpu_inventory.operator.store import Changes, Kind, Projections

logger = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES: Final = 3
CREATE_RETRY_AFTER: Final = 30.0
"""Seconds before a GPUNode we created (or found existing) is created again if its watch
event still has not arrived."""


class WriterApi(Protocol):
    """What the writer needs from the API server (`kubeapi.KubeApi`, or a fake in tests)."""

    def get_inventory(self) -> dict[str, Any] | None: ...
    def create_inventory(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def patch_inventory_status(self, patch: Mapping[str, Any]) -> dict[str, Any]: ...
    def create_gpunode(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def patch_gpunode_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...
    def has_any(self, kind: Kind) -> bool: ...
    def list_keys(self, kind: Kind, *, chunk: int = 500) -> set[str]: ...
    def iter_objects(
        self, kind: Kind, *, chunk: int = 500, metadata_only: bool = False
    ) -> Iterator[dict[str, Any]]: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(slots=True)
class PassReport:
    """What one pass did (for tests and logs)."""

    inventory_patches: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    gpunode_patches: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    created_gpunodes: list[str] = dataclasses.field(default_factory=list)
    created_inventory: bool = False
    swept: dict[str, list[str]] = dataclasses.field(default_factory=dict)


class Writer:
    """The operator's only writer. `run()` forever; `run_pass()` once (tests)."""

    def __init__(
        self,
        store: Projections,
        api: WriterApi,
        config: OperatorConfig,
        *,
        metrics: Metrics | None = None,
        is_leader: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.api = api
        self.config = config
        self.metrics = metrics
        self.is_leader = is_leader
        self.clock = clock
        self.wallclock = wallclock
        self.forbidden: dict[str, str] = {}
        """what -> server message, for writes refused with 403."""
        self.invalid: dict[str, str] = {}
        """what -> server message, for writes refused with 422."""
        self._created: dict[str, float] = {}
        self._synced_once = False
        self._last_full = -1e18
        self._wake = asyncio.Event()
        self._failures = 0
        self._node_task: asyncio.Task[None] | None = None
        self._node_pool = concurrent.futures.ThreadPoolExecutor(
            config.write_concurrency, thread_name_prefix="gpunode-writes"
        )
        self._full_pending = False
        self._labels_incomplete = False
        """The label prefixes widened and the LIST that re-reads node labels has not succeeded."""
        self.latest_status: GPUInventoryStatus | None = None
        """The status last computed from a complete listing (None before the first complete
        sync); what `inventory_metrics` exports."""
        self.last_write_time: float | None = None
        """Unix time of the last successful GPUInventory status write."""
        store.on_change = self._wake.set

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Probe, then pass after pass until cancelled (which also stops GPUNode writes)."""
        try:
            await self._retrying(self.probe)
            while True:
                await self._wait()
                try:
                    await self.run_pass(overlap=True)
                except UnavailableError as error:
                    await self._back_off(error)
                except Exception:
                    logger.exception("writer pass failed; retrying after a pause")
                    await asyncio.sleep(self.config.backoff_max / 10)
                else:
                    if self._failures:
                        logger.info("API server reachable again; writes resumed")
                    self._failures = 0
        finally:
            task, self._node_task = self._node_task, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _retrying(self, step: Callable[[], Any]) -> None:
        while True:
            try:
                await step()
                return
            except UnavailableError as error:
                await self._back_off(error)

    async def _back_off(self, error: Exception) -> None:
        self._failures += 1
        delay = min(self.config.backoff_max, 0.5 * 2 ** min(self._failures, 10))
        log = logger.warning if self._failures == 1 else logger.debug
        log("API server unavailable (%s); retrying in %.1fs", error, delay)
        await asyncio.sleep(delay)

    async def _wait(self) -> None:
        """Until something changed (then one coalescing window), a listing needs settling,
        or a periodic re-evaluation is due."""
        now = self.clock()
        until_full = self._last_full + self.config.resync_interval - now
        if not self.store.dirty and until_full > 0:
            timeout = until_full
            if not self.store.synced() or self.store.listing_pending():
                timeout = min(timeout, self.config.list_settle / 3)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        await asyncio.sleep(self.config.write_window)
        self._wake.clear()

    async def probe(self) -> None:
        """Tell the store which kinds have objects, so an empty kind counts as listed at once."""
        for kind in Kind:
            try:
                has_any = await asyncio.to_thread(self.api.has_any, kind)
            except ApiError as error:
                logger.error("cannot list %s (%s); waiting for kopf's listing", kind.value, error)
                has_any = True
            self.store.expect(kind, has_any)

    # --- one pass -------------------------------------------------------------------------------

    async def run_pass(self, *, overlap: bool = False) -> PassReport:
        """One pass. With `overlap`, GPUNode writes run on in the background while the next
        pass already writes the inventory: users read the inventory, and its freshness must
        not wait behind dozens of per-node patches. Without it (tests), the pass waits."""
        report = PassReport()
        now = self.clock()
        for kind in self.store.settle(
            now=now, quiet=self.config.list_settle, timeout=self.config.initial_list_timeout
        ):
            report.swept[kind.value] = await self._sweep(kind)
        leader = self.is_leader()
        if self.metrics is not None:
            self.metrics.leader.set(1 if leader else 0)
            self.metrics.set_objects(self.store.counts())
        if not leader:
            # A standby computes nothing; what changed meanwhile is covered by a full pass
            # when it takes over (and its latency clock must not start before that).
            self.store.take_changes()
            self._full_pending = True
            return report
        self._collect_gpunode_writes()
        full = self._full_pending or now - self._last_full >= self.config.resync_interval
        synced = self.store.synced()
        if synced and not self._synced_once:
            self._synced_once = full = True
            logger.info("first listing complete: %s", self.store.counts())
        if full:
            self._last_full = now
        changes = self.store.take_changes()
        try:
            await self._ensure_inventory(report)
            await self._refresh_labels()
            if changes.inventory or full:
                await self._write_inventory(report)
        except BaseException:
            self.store.restore(changes)
            raise
        written = self.clock()
        if synced and changes.first_pod_event is not None and self.metrics is not None:
            self.metrics.observe_latency(written - changes.first_pod_event)
        if synced:
            await self._start_gpunode_writes(changes, report, full=full, overlap=overlap)
        else:
            self.store.mark_nodes(changes.nodes)
        logger.debug(
            "pass: inventory %.0f ms, %d node changes%s",
            (written - now) * 1000,
            len(changes.nodes),
            " (full)" if full else "",
        )
        return report

    async def _start_gpunode_writes(
        self, changes: Changes, report: PassReport, *, full: bool, overlap: bool
    ) -> None:
        running = self._node_task
        if running is not None and not running.done():
            self.store.mark_nodes(changes.nodes)  # the previous batch is still writing
            self._full_pending = self._full_pending or full
            return
        self._full_pending = False
        task = asyncio.create_task(self._write_gpunodes(changes, report, full=full))
        self._node_task = task
        if not overlap:
            self._node_task = None
            await task

    def _collect_gpunode_writes(self) -> None:
        """Surface what the previous background batch raised (an outage backs the loop off)."""
        task = self._node_task
        if task is None or not task.done():
            return
        self._node_task = None
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, UnavailableError):
            raise error
        if error is not None:
            logger.error("GPUNode writes failed", exc_info=error)

    def close(self) -> None:
        """Release the GPUNode write threads (after the task running `run()` ended)."""
        self._node_pool.shutdown(wait=False, cancel_futures=True)

    async def _sweep(self, kind: Kind) -> list[str]:
        self.store.begin_sweep(kind)
        try:
            listed = await asyncio.to_thread(
                self.api.list_keys, kind, chunk=self.config.list_chunk_size
            )
        except BaseException:
            self.store.abort_sweep(kind)
            raise
        gone = self.store.sweep(kind, listed, now=self.clock())
        if gone:
            logger.info(
                "after a relist of %s, dropped %d gone: %s", kind.value, len(gone), gone[:5]
            )
        return gone

    # --- the GPUInventory -----------------------------------------------------------------------

    async def _ensure_inventory(self, report: PassReport) -> None:
        if not self.store.inventory_known:
            body = await asyncio.to_thread(self.api.get_inventory)
            self.store.inventory_read(_project_inventory(body))
        if self.store.inventory is not None:
            return
        try:
            body = await asyncio.to_thread(self.api.create_inventory, objects.inventory_object())
        except ApiError as error:
            if error.status == 409:  # someone (an earlier pass, a user, GitOps) was faster
                body = await asyncio.to_thread(self.api.get_inventory)
            else:
                self._refused("create gpuinventories", error, kind="GPUInventory")
                return
        else:
            logger.info("created GPUInventory/cluster")
            report.created_inventory = True
            self._count("GPUInventory", "created")
        self.store.inventory_read(_project_inventory(body))

    async def _refresh_labels(self) -> None:
        inventory = self.store.inventory
        if inventory is None:
            return
        wanted = projections.label_filter(inventory.spec)
        if not self.store.set_label_filter(wanted):
            logger.info("label prefixes widened; re-reading node labels with one LIST")
            self._labels_incomplete = True
        if not self._labels_incomplete:
            return
        fresh = await asyncio.to_thread(self._list_nodes, wanted)  # raising: retried next pass
        self._labels_incomplete = False
        for node in fresh:
            self.store.refresh_node(node)

    def _list_nodes(self, labels: projections.LabelFilter) -> list[projections.NodeProjection]:
        nodes: list[projections.NodeProjection] = []
        for body in self.api.iter_objects(Kind.NODES, chunk=self.config.list_chunk_size):
            try:
                nodes.append(projections.project_node(body, labels))
            except projections.ProjectionError:
                continue  # logged by its own event handler
        return nodes

    def health(self) -> status.OperatorHealth:
        inventory = self.store.inventory
        return status.OperatorHealth(
            synced=self.store.synced(),
            forbidden=tuple(sorted(self.forbidden)),
            write_errors=tuple(f"{what}: {msg}" for what, msg in sorted(self.invalid.items())),
            spec_error=inventory.spec_error if inventory is not None else "",
        )

    async def _write_inventory(self, report: PassReport) -> None:
        for _attempt in range(MAX_CONFLICT_RETRIES):
            inventory = self.store.inventory
            if inventory is None:
                return  # could not create it; logged
            desired = status.desired_status(
                self._state(),
                inventory.spec,
                generation=inventory.generation,
                existing=inventory.status,
                health=self.health(),
                now=self.wallclock(),
            )
            if self.store.synced():
                self.latest_status = desired
            patch = patches.inventory_status_patch(
                inventory.status_wire,
                desired.to_wire(),
                resource_version=inventory.resource_version,
            )
            if not patch:
                return
            try:
                body = await asyncio.to_thread(self.api.patch_inventory_status, patch)
            except ApiError as error:
                if error.status == 409:
                    self._count("GPUInventory", "conflict")
                    fresh = await asyncio.to_thread(self.api.get_inventory)
                    self.store.inventory_read(_project_inventory(fresh))
                    continue
                if error.status == 404:
                    self._count("GPUInventory", "gone")
                    logger.warning("GPUInventory/cluster is gone; re-creating it")
                    self.store.inventory_read(None)
                    return
                if error.status == 422:
                    await self._status_refused(error, inventory)
                    return
                self._refused("patch gpuinventories/status", error, kind="GPUInventory")
                return
            self._accepted("patch gpuinventories/status")
            self.last_write_time = self.wallclock().timestamp()
            self._count("GPUInventory", "ok")
            report.inventory_patches.append(patch)
            self.store.inventory_read(_project_inventory(body))
            return
        logger.warning("GPUInventory/cluster kept changing under the writer; next pass retries")
        self.store.mark_inventory()

    async def _status_refused(
        self, error: ApiError, inventory: projections.InventoryProjection
    ) -> None:
        """A 422 on the whole status: report it in the conditions alone, which are small and
        always valid, so users see why the numbers are not current."""
        self._count("GPUInventory", "invalid")
        what = "patch gpuinventories/status"
        if what not in self.invalid:
            logger.error("the API server refused the GPUInventory status: %s", error.message)
        self.invalid[what] = error.message[:300]
        base = inventory.status
        conditions = status.desired_status(
            self._state(),
            inventory.spec,
            generation=inventory.generation,
            existing=base,
            health=dataclasses.replace(self.health(), synced=True),
            now=self.wallclock(),
        ).conditions
        current = base.to_wire() if base is not None else None
        wanted = dict(current or {})
        wanted["conditions"] = [c.to_wire() for c in conditions]
        patch = patches.inventory_status_patch(
            current, wanted, resource_version=inventory.resource_version
        )
        if not patch:
            return
        try:
            body = await asyncio.to_thread(self.api.patch_inventory_status, patch)
        except ApiError as second:
            logger.error("could not even report the refusal in the conditions: %s", second)
            return
        self.store.inventory_read(_project_inventory(body))

    # --- GPUNodes -------------------------------------------------------------------------------

    async def _write_gpunodes(self, changes: Changes, report: PassReport, *, full: bool) -> None:
        inventory = self.store.inventory
        spec = inventory.spec if inventory is not None else GPUInventorySpec()
        names = set(self.store.nodes) if full else set(changes.nodes)
        if full:  # forget creations of nodes that left
            self._created = {n: t for n, t in self._created.items() if n in self.store.nodes}
        matcher = status.matcher_for(spec)
        now_mono = self.clock()
        creates: list[projections.NodeProjection] = []
        patch_names: list[str] = []
        for name in sorted(names):
            node = self.store.nodes.get(name)
            if node is None:
                continue
            if name in self.store.gpunodes:
                self._created.pop(name, None)
                patch_names.append(name)
            elif node.has_capacity(matcher) and now_mono - self._created.get(name, -1e18) > (
                CREATE_RETRY_AFTER
            ):
                if "create gpunodes" in self.forbidden and not full:
                    continue
                creates.append(node)
        views = status.desired_views(self._state(), spec, patch_names, now=self.wallclock())
        # Patches first: they keep rows users read current. Creations (agents create their own
        # GPUNode; these are for nodes without one) can wait a pass when the budget is spent,
        # as it is for thousands of passes' worth at a cold start.
        work: list[tuple[str, Callable[[], Any]]] = []
        for name, view in views.items():
            current = self.store.gpunodes[name].kubernetes
            patch = patches.gpunode_status_patch(current, view.to_wire())
            if patch and ("patch gpunodes/status" not in self.forbidden or full):
                work.append((name, _bind(self._patch_gpunode, name, patch, report)))
        for node in creates:
            work.append((node.name, _bind(self._create_gpunode, node, report)))
        budget = self.config.gpunode_writes_per_pass
        if len(work) > budget:
            self.store.mark_nodes([name for name, _ in work[budget:]])
            work = work[:budget]
        semaphore = asyncio.Semaphore(self.config.write_concurrency)

        async def limited(step: Callable[[], Any]) -> None:
            async with semaphore:
                await step()

        results = await asyncio.gather(*(limited(step) for _, step in work), return_exceptions=True)
        failed = [name for (name, _), result in zip(work, results, strict=True) if result]
        for result in results:
            if isinstance(result, UnavailableError):
                self.store.mark_nodes(failed)
                raise result
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _create_gpunode(self, node: projections.NodeProjection, report: PassReport) -> None:
        self._created[node.name] = self.clock()
        try:
            body = await self._node_call(
                self.api.create_gpunode, objects.gpunode_object(node.name, node.uid)
            )
        except ApiError as error:
            if error.status == 409:
                self._count("GPUNode", "exists")
                return  # the agent made it first; its watch event brings it
            self._created.pop(node.name, None)
            self._refused("create gpunodes", error, kind="GPUNode")
            return
        self._accepted("create gpunodes")
        self._count("GPUNode", "created")
        report.created_gpunodes.append(node.name)
        self.store.gpunode_written(projections.project_gpunode(body))

    async def _patch_gpunode(self, name: str, patch: dict[str, Any], report: PassReport) -> None:
        try:
            body = await self._node_call(self.api.patch_gpunode_status, name, patch)
        except ApiError as error:
            if error.status == 404:
                self._count("GPUNode", "gone")
                self.store.gpunode_event(name, "", None, listing=False, now=self.clock())
                return
            self._refused("patch gpunodes/status", error, kind="GPUNode")
            return
        self._accepted("patch gpunodes/status")
        self._count("GPUNode", "ok")
        report.gpunode_patches[name] = patch
        self.store.gpunode_written(projections.project_gpunode(body))

    async def _node_call(self, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        """GPUNode writes get their own threads, so the inventory's write never queues behind
        them in the event loop's default executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._node_pool, functools.partial(fn, *args))

    # --- bookkeeping ----------------------------------------------------------------------------

    def _state(self) -> status.ClusterState:
        return status.ClusterState(
            nodes=self.store.nodes, gpunodes=self.store.gpunodes, allocated=self.store.allocated
        )

    def _refused(self, what: str, error: ApiError, *, kind: str) -> None:
        if error.status == 403:
            self._count(kind, "forbidden")
            if what not in self.forbidden:
                logger.error(
                    "FORBIDDEN: the API server does not let the operator %s (%s). "
                    "The inventory is Stalled until its RBAC allows it.",
                    what,
                    error.message,
                )
            self.forbidden[what] = error.message
            self.store.mark_inventory()
            return
        if error.status == 422:
            self._count(kind, "invalid")
            logger.error("the API server refused to %s: %s", what, error.message)
            self.invalid[what] = error.message[:300]
            self.store.mark_inventory()
            return
        self._count(kind, f"http_{error.status}")
        logger.error("could not %s: %s", what, error)

    def _accepted(self, what: str) -> None:
        if self.forbidden.pop(what, None) is not None:
            logger.info("the operator may %s again", what)
            self.store.mark_inventory()
        if self.invalid.pop(what, None) is not None:
            self.store.mark_inventory()

    def _count(self, kind: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.count_write(kind, result)


def _bind(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: fn(*args)


def _project_inventory(body: Mapping[str, Any] | None) -> projections.InventoryProjection | None:
    return projections.project_inventory(body) if body is not None else None
