"""The GPUNodes' one writer: each GPU node's `status.kubernetes`, and GPUNodes nobody created.

Runs as its own asyncio task beside the inventory writer, so per-node writes never delay the
inventory (what users read) and an outage or refusal of one never stalls the other. One pass:

1. take the nodes the store marked (their Node, GPUNode or pods changed, or their facts
   expired), and only while every listing is complete and this replica holds the Lease;
2. for each, compute the desired view (`facts` + `status.node_view`) and merge-patch the
   difference, conditional on the GPUNode's resourceVersion (409: retried once its watch
   event brings the newer version); create the GPUNode of a GPU node that has none (agents
   create their own; this covers nodes whose agent is not running);
3. at most `gpunode_writes_per_pass` writes, patches first (they keep rows users read
   current), `write_concurrency` at a time on threads of their own; the rest waits a pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from gpu_inventory.api import objects
from gpu_inventory.api.models import GPUInventorySpec
from gpu_inventory.operator import patches, projections, status
from gpu_inventory.operator.facts import node_facts
from gpu_inventory.operator.kubeapi import ApiError, FencedError, UnavailableError
from gpu_inventory.operator.store import Phase
from gpu_inventory.operator.writing import Shared, Writer

logger = logging.getLogger(__name__)

PATCH: Final = "patch gpunodes/status"
CREATE: Final = "create gpunodes"
CREATE_RETRY_AFTER: Final = 30.0
"""Seconds before a GPUNode we created (or found existing) is created again if its watch
event still has not arrived."""
_NO_SUMS: Final[Mapping[str, int]] = {}


class GPUNodeApi(Protocol):
    def create_gpunode(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def patch_gpunode_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclasses.dataclass(slots=True)
class PassReport:
    """What one pass sent (for tests and logs)."""

    patches: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    created: list[str] = dataclasses.field(default_factory=list)
    deferred: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    name: str
    what: str
    call: Callable[[], dict[str, Any]]
    patch: dict[str, Any] = dataclasses.field(default_factory=dict)


class GPUNodeWriter(Writer):
    """Writes GPUNode `status.kubernetes`. `run()` forever; `run_pass()` once (tests)."""

    name = "GPUNode writer"

    def __init__(self, shared: Shared, api: GPUNodeApi) -> None:
        super().__init__(shared, threads=shared.config.write_concurrency)
        self.api = api
        self._created: dict[str, float] = {}
        self._deferred = True  # a first pass at once
        self.store.on_views_change = self._wake.set

    def pending(self) -> bool:
        """Writes left over by the last pass's budget go on at once."""
        return self._deferred

    def until_due(self) -> float:
        retry = self.backoff.next_retry()
        due = self.config.resync_interval if retry is None else retry - self.clock()
        return min(self.config.resync_interval, due)

    # --- one pass -------------------------------------------------------------------------------

    async def run_pass(self) -> PassReport:
        report = PassReport()
        if not self.is_leader():
            self._leading = False
            return report
        if not self._leading:
            self._leading = True
            self.store.mark_views(self.store.nodes.live)  # taking over: compare every view
        if self.store.phase() is not Phase.CURRENT:
            return report  # views are written from complete listings only; marks are kept
        names = self.store.take_views_dirty()
        self._created = {n: t for n, t in self._created.items() if n in self.store.nodes.live}
        inventory = self.store.inventory
        spec = inventory.spec if inventory is not None else GPUInventorySpec()
        jobs = self._jobs(sorted(names), spec)
        budget = self.config.gpunode_writes_per_pass
        self._deferred = len(jobs) > budget
        if self._deferred:
            report.deferred = len(jobs) - budget
            self.store.mark_views(job.name for job in jobs[budget:])
            jobs = jobs[:budget]
        await self._run_jobs(jobs, report)
        return report

    def _jobs(self, names: list[str], spec: GPUInventorySpec) -> list[_Job]:
        now, now_mono = self.wallclock(), self.clock()
        patch_ok = self.backoff.ready(PATCH, now=now_mono)
        create_ok = self.backoff.ready(CREATE, now=now_mono)
        updates: list[_Job] = []
        creates: list[_Job] = []
        for name in names:
            node = self.store.nodes.live.get(name)
            if node is None:
                continue
            gpunode = self.store.gpunodes.live.get(name)
            if gpunode is None:
                if (
                    self.store.is_gpu_node(name)
                    and now_mono - self._created.get(name, -1e18) > CREATE_RETRY_AFTER
                ):
                    if create_ok and self.backoff.ready(f"{CREATE} of {name}", now=now_mono):
                        creates.append(_Job(name, CREATE, functools.partial(self._create, node)))
                    else:
                        self.store.mark_views([name])  # after the backoff
                continue
            self._created.pop(name, None)
            facts = node_facts(
                node,
                gpunode,
                self.store.allocated.get(name, _NO_SUMS),
                spec,
                now=now,
                dra=self.store.dra_counts(name),
            )
            view = status.node_view(facts, labels=node.labels, conditions=node.conditions)
            patch = patches.gpunode_status_patch(
                gpunode.kubernetes, view.to_wire(), resource_version=gpunode.resource_version
            )
            if not patch:
                continue
            if patch_ok and self.backoff.ready(f"{PATCH} of {name}", now=now_mono):
                call = functools.partial(self.api.patch_gpunode_status, name, patch)
                updates.append(_Job(name, PATCH, call, patch))
            else:
                self.store.mark_views([name])
        return updates + creates

    def _create(self, node: projections.NodeProjection) -> dict[str, Any]:
        self._created[node.name] = self.clock()
        return self.api.create_gpunode(objects.gpunode_object(node.name, node.uid))

    async def _run_jobs(self, jobs: list[_Job], report: PassReport) -> None:
        semaphore = asyncio.Semaphore(self.config.write_concurrency)

        async def one(job: _Job) -> None:
            async with semaphore:
                body = await self.call(job.call)
            self._written(job, body, report)

        results = await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)
        unavailable: UnavailableError | None = None
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, ApiError):
                self._failed(job, result)
            elif isinstance(result, UnavailableError | FencedError):
                self.store.mark_views([job.name])
                if isinstance(result, UnavailableError):
                    unavailable = result
            elif isinstance(result, BaseException):
                self.store.mark_views([job.name])
                logger.error("GPUNode write for %s failed", job.name, exc_info=result)
        if unavailable is not None:
            raise unavailable

    def _written(self, job: _Job, body: dict[str, Any], report: PassReport) -> None:
        if self.accepted(job.what, _per_node(job)):
            self.store.mark_inventory()
        self._count("created" if job.what == CREATE else "ok")
        self.store.gpunode_answer(projections.project_gpunode(body))
        if job.what == CREATE:
            report.created.append(job.name)
            self.store.mark_views([job.name])  # a new GPUNode: its view is written next pass
            self._wake.set()
        else:
            report.patches[job.name] = job.patch

    def _failed(self, job: _Job, error: ApiError) -> None:
        if error.status == 409:
            if job.what == CREATE:
                self._count("exists")  # the agent made it first; its watch event brings it
            else:
                self._count("conflict")  # changed meanwhile: retry once its event arrives
                self.store.mark_views([job.name])
            return
        if error.status == 404 and job.what == PATCH:
            self._count("gone")
            self.store.gpunode_gone(job.name)
            return
        if job.what == CREATE:
            self._created.pop(job.name, None)
        self.store.mark_views([job.name])
        # RBAC refuses every node alike: one backoff for all. Anything else (an admission
        # policy, the schema) refuses that node: its own backoff, so a healthy node's success
        # never resets it.
        key = job.what if error.status == 403 else _per_node(job)
        if self.refused(key, error, kind="GPUNode"):
            self.store.mark_inventory()

    def _count(self, result: str) -> None:
        self.count("GPUNode", result)


def _per_node(job: _Job) -> str:
    return f"{job.what} of {job.name}"
