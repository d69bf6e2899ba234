"""The operator's own options: one documented dataclass, read from the environment once.

Pure: no I/O beyond reading the `environ` mapping it is given. kopf's settings (watch timeouts,
selectors, posting) are set in `main.configure()`; this holds what is ours.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from typing import Final

ENV_PREFIX: Final = "GPU_INVENTORY_"

POD_FIELD_SELECTOR: Final = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"
"""Only bound, non-terminal pods reach the operator (kube-scheduler's own pod informer filter).

A pod that stops matching (it finishes) arrives as a DELETED event, so the store needs no
phase logic for the common case; `pod_counts` still guards against a missing selector.
"""


class ConfigError(ValueError):
    """An environment variable holds a value the operator cannot use; names the variable."""


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorConfig:
    """Tunables of gpu-inventory-operator. Each is `GPU_INVENTORY_<FIELD NAME UPPERCASED>`."""

    write_window: float = 0.5
    """Seconds to coalesce changes before one write (default 0.5).

    A storm of pod events costs one write per window, and a single change still reaches the
    status within about a second (design: "Freshness").
    """

    resync_interval: float = 10.0
    """Seconds between re-evaluations when no event arrives (default 10).

    Agent staleness changes with time alone; this is how a heartbeat that stops turns a node
    Stale within `agentStaleAfterSeconds + resync_interval`. A pass that changes nothing
    writes nothing, so the cost is CPU only.
    """

    list_chunk_size: int = 500
    """Objects per page in kopf's LISTs and the operator's own (default 500, as `kubectl`).

    Bounds the memory spike of listing 150,000 pods: only one page is parsed at a time.
    """

    gpunode_writes_per_pass: int = 200
    """GPUNode creations plus status patches in one pass of the GPUNode writer (default 200).

    The rest waits for the next pass; the inventory has a writer of its own and never waits
    behind them.
    """

    write_concurrency: int = 8
    """Threads doing GPUNode writes in parallel within a pass (default 8)."""

    backoff_max: float = 30.0
    """Longest pause in seconds between retries while the API server is unreachable."""

    refused_backoff_max: float = 300.0
    """Longest pause in seconds before a write the API server refused (403, 422, too large)
    is tried again (default 300): the pause doubles from 1 s, so a missing RBAC rule costs a
    few requests an hour, and fixing it is noticed within five minutes."""

    metrics_port: int = 9090
    """Port of the Prometheus `/metrics` endpoint; 0 turns it off (default 9090)."""

    metrics_host: str = "0.0.0.0"
    """Address the metrics endpoint binds (default all interfaces, as Prometheus scrapes pods)."""

    lease_namespace: str = ""
    """Namespace of the leader-election Lease; empty runs standalone (always the writer).

    Two or more replicas are safe only with a Lease: every replica watches (a warm standby),
    only the holder writes. Defaults to `POD_NAMESPACE` when that is set (the Downward API).
    """

    lease_name: str = "gpu-inventory-operator"
    """Name of the leader-election Lease object."""

    identity: str = ""
    """This replica's holder identity in the Lease; defaults to `POD_NAME`, else host-pid."""

    lease_duration: float = 15.0
    """Seconds a Lease stays valid without renewal (client-go's default, 15)."""

    lease_renew_deadline: float = 10.0
    """Seconds the holder keeps writing without a successful renewal (client-go's default, 10).
    Writes stop then; a standby may take over only `lease_duration` after the last renewal."""

    lease_renew_interval: float = 2.0
    """Seconds between Lease renewals and acquisition attempts (client-go's retry period, 2)."""

    request_timeout: float = 30.0
    """Seconds before one write request to the API server is abandoned and retried."""

    def __post_init__(self) -> None:
        positive = {
            "write_window": self.write_window,
            "resync_interval": self.resync_interval,
            "backoff_max": self.backoff_max,
            "refused_backoff_max": self.refused_backoff_max,
            "lease_duration": self.lease_duration,
            "lease_renew_deadline": self.lease_renew_deadline,
            "lease_renew_interval": self.lease_renew_interval,
            "request_timeout": self.request_timeout,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be > 0, got {value}")
        for name, count in {
            "list_chunk_size": self.list_chunk_size,
            "gpunode_writes_per_pass": self.gpunode_writes_per_pass,
            "write_concurrency": self.write_concurrency,
        }.items():
            if count < 1:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be >= 1, got {count}")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"{ENV_PREFIX}METRICS_PORT must be 0..65535, got {self.metrics_port}")
        if self.lease_namespace and not (
            self.lease_renew_interval < self.lease_renew_deadline < self.lease_duration
        ):
            raise ConfigError(
                f"{ENV_PREFIX}LEASE_RENEW_INTERVAL ({self.lease_renew_interval}) <"
                f" {ENV_PREFIX}LEASE_RENEW_DEADLINE ({self.lease_renew_deadline}) <"
                f" {ENV_PREFIX}LEASE_DURATION ({self.lease_duration}) must hold"
            )

    @property
    def standalone(self) -> bool:
        """No Lease: this process is the only writer (one replica, or tests)."""
        return not self.lease_namespace

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        """Read every field from `GPU_INVENTORY_<FIELD>`; unset ones keep their default."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            key = ENV_PREFIX + field.name.upper()
            raw = env.get(key)
            if raw is None or raw == "":
                continue
            values[field.name] = _convert(key, raw, field.type)
        values.setdefault("lease_namespace", env.get("POD_NAMESPACE", ""))
        values.setdefault(
            "identity", env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        )
        return cls(**values)  # type: ignore[arg-type]


def _convert(key: str, raw: str, type_: object) -> object:
    try:
        if type_ in ("float", float):
            return float(raw)
        if type_ in ("int", int):
            return int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a {type_}") from None
    return raw
