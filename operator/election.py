"""Leader election on a coordination.k8s.io Lease: of several replicas, only the holder writes.

Why a Lease and not kopf peering: every replica keeps watching, so a standby holds warm
projections and takes over within one Lease duration without a relist; the writer checks
`is_leader()` before each pass (kopf's pause is invisible to a task that is not a handler);
nothing needs installing (no ClusterKopfPeering CRD, no finalizer on the GPUInventory); and
two replicas can never freeze on equal priorities. kopf itself runs `standalone`.

The rules and timings are client-go's (`tools/leaderelection/leaderelection.go`: LeaseDuration
15 s, RenewDeadline 10 s, RetryPeriod 2 s):
- a Lease held by someone else is taken only after its record went unchanged for
  `leaseDurationSeconds` *as observed on our own clock*, stamped after the GET that saw it
  (`setObservedRecord` runs after `Lock.Get`), so a standby never takes over early; clocks of
  different machines are never compared;
- updates carry the resourceVersion (a race loses with 409);
- the holder counts its renewal from the moment *before* it sent the update, and stops being
  the leader once it failed to renew for `renew_deadline`.

Fencing (`write_deadline`): every write is checked right before it is sent, and given only the
time left until the earliest moment a standby could take over (renewal + lease duration), so
a replica that loses the Lease mid-pass writes nothing more. Kubernetes has no fencing tokens;
the writes are also conditional on the resourceVersion the writer last saw, so a write from a
process frozen between that check and the send fails with 409 whenever the new leader (or an
agent) has written meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from gpu_inventory.operator.kubeapi import ApiError, UnavailableError

logger = logging.getLogger(__name__)


class LeaseApi(Protocol):
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def replace_lease(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]: ...


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass
class LeaseElector:
    """Acquire and renew one Lease; `is_leader()` says whether writing is safe right now."""

    api: LeaseApi
    namespace: str
    name: str
    identity: str
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0
    margin: float = 1.0
    """Seconds of the Lease never used for writes: slack for clock rates and scheduling."""
    may_take_over: Callable[[], bool] = lambda: True
    """Whether this replica may take a Lease another replica held (False while its first
    listing runs: a warm standby should take over, not a replica that would publish
    "Indexing" for the length of a full listing). A Lease nobody ever held is taken anyway."""
    on_change: Callable[[bool], None] = lambda leading: None
    """Called in the event loop when this replica starts or stops leading."""
    clock: Callable[[], float] = time.monotonic
    wallclock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _observed: tuple[str, str, str] | None = None
    _observed_at: float = 0.0
    _renewed_at: float | None = None
    _last_warning: str = ""

    def _warn(self, message: str) -> None:
        """One WARNING per distinct failure (a missing RBAC rule fails every 2 s)."""
        if message != self._last_warning:
            logger.warning("Lease %s/%s: %s", self.namespace, self.name, message)
        self._last_warning = message

    def is_leader(self) -> bool:
        """Held, and renewed within the renew deadline."""
        return (
            self._renewed_at is not None and self.clock() < self._renewed_at + self.renew_deadline
        )

    def write_deadline(self) -> float | None:
        """When a write started now must be over (None: not the leader). A standby takes over
        no earlier than `duration` after our last renewal was sent."""
        if not self.is_leader():
            return None
        assert self._renewed_at is not None
        return self._renewed_at + self.duration - self.margin

    async def run(self) -> None:
        """Try to acquire or renew every `retry` seconds, until cancelled (then release)."""
        try:
            while True:
                was = self.is_leader()
                try:
                    await asyncio.to_thread(self.try_acquire_or_renew)
                except (UnavailableError, ApiError) as error:
                    self._warn(str(error))
                except Exception as error:  # a bug must not end the Lease loop silently
                    logger.exception("Lease %s/%s: unexpected error", self.namespace, self.name)
                    self._warn(repr(error))
                else:
                    self._last_warning = ""
                now = self.is_leader()
                if now != was:
                    logger.info(
                        "%s the Lease %s/%s as %s",
                        "holding" if now else "lost",
                        self.namespace,
                        self.name,
                        self.identity,
                    )
                    self.on_change(now)
                await asyncio.sleep(self.retry)
        finally:
            if self._renewed_at is not None:
                await asyncio.to_thread(self._release)

    def try_acquire_or_renew(self) -> bool:
        """One round; returns whether this replica holds the Lease afterwards."""
        started = self.clock()
        lease = self.api.get_lease(self.namespace, self.name)
        observed = self.clock()  # after the GET, as client-go stamps it
        now = self.wallclock()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, acquired=now, transitions=0),
            }
            try:
                self.api.create_lease(self.namespace, body)
            except ApiError as error:
                if error.status == 409:
                    return False
                raise
            self._renewed_at = started
            return True
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        record = (holder, str(spec.get("renewTime") or ""), version)
        if record != self._observed:
            self._observed, self._observed_at = record, observed
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        if holder and holder != self.identity and observed < self._observed_at + duration:
            self._renewed_at = None
            return False
        if holder != self.identity and not self.may_take_over():
            self._renewed_at = None
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        mine = holder == self.identity
        acquired = spec.get("acquireTime") if mine else _micro_time(now)
        updated: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": (lease.get("metadata") or {}).get("resourceVersion"),
            },
            "spec": self._spec(
                now, acquired=acquired, transitions=transitions if mine else transitions + 1
            ),
        }
        try:
            self.api.replace_lease(self.namespace, self.name, updated)
        except ApiError as error:
            if error.status == 409:
                self._renewed_at = None
                return False
            raise
        self._renewed_at = started
        return True

    def _spec(self, now: datetime, *, acquired: object, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": round(self.duration),
            "acquireTime": acquired if isinstance(acquired, str) else _micro_time(now),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }

    def _release(self) -> None:
        """Give the Lease up on shutdown, so a standby takes over at once."""
        self._renewed_at = None
        try:
            lease = self.api.get_lease(self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["leaseDurationSeconds"] = 1
            self.api.replace_lease(self.namespace, self.name, lease)
        except (UnavailableError, ApiError) as error:
            logger.warning("could not release the Lease: %s", error)
