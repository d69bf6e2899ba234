"""The agent's options: one documented dataclass, filled from flags and the environment once.

Pure: no I/O. `main.py` parses; this module checks and documents.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from gpu_inventory.nodeagent.health import HealthPolicy
from gpu_inventory.nodeagent.reporter import ReportPolicy


class ConfigError(ValueError):
    """An option is missing or out of range; the message names it as a user sets it."""


FLAGS: Final[dict[str, str]] = {
    "read_interval_seconds": "--interval",
    "nvml_retry_seconds": "--nvml-retry",
    "node_poll_seconds": "--node-poll",
    "event_wait_seconds": "the event wait",
}
"""How a user names each positive option (`main.py` defines the flags with these names)."""


@dataclasses.dataclass(frozen=True, slots=True)
class AgentConfig:
    node_name: str
    """The node this agent runs on (env NODE_NAME, from the downward API). Required."""
    pod_name: str = ""
    """This agent's pod (env POD_NAME), recorded in `status.agent.podName`."""
    kubeconfig: str | None = None
    """A kubeconfig file; default $KUBECONFIG, else in-cluster, else ~/.kube/config."""
    read_interval_seconds: float = 5.0
    """Seconds between two reads of NVML (default 5). Reads are local and cheap; writes are
    paced separately by the report policy."""
    nvml_retry_seconds: float = 30.0
    """Seconds between attempts to initialise NVML while it is unavailable (default 30)."""
    event_wait_seconds: float = 0.5
    """Timeout of one `nvmlEventSetWait`; bounds how long stopping the event thread takes."""
    node_poll_seconds: float = 60.0
    """Seconds between two GETs of this agent's own Node where RBAC forbids watching it (default
    60; the watch, when allowed, sees each change within a second). A GET with resourceVersion=0
    is served from the API server's watch cache: 5,000 nodes cost ~83 cheap reads/s, and a driver
    upgrade waits at most this long for NVML to be released."""
    report: ReportPolicy = dataclasses.field(default_factory=ReportPolicy)
    health: HealthPolicy = dataclasses.field(default_factory=HealthPolicy)
    health_host: str = "0.0.0.0"
    """Address of the /healthz endpoint (all interfaces, for the kubelet's probes)."""
    health_port: int = 8081
    """Port of the /healthz endpoint; 0 picks a free one and logs it (tests)."""

    def __post_init__(self) -> None:
        if not self.node_name:
            raise ConfigError(
                "NODE_NAME is not set: set it from the downward API (fieldRef spec.nodeName) "
                "or pass --node-name"
            )
        for name, flag in FLAGS.items():
            if getattr(self, name) <= 0:
                raise ConfigError(f"{flag} must be > 0 s, got {getattr(self, name)}")
        if self.health.xid_window_seconds <= 0:
            raise ConfigError(f"--xid-window must be > 0 s, got {self.health.xid_window_seconds}")
        if not 0 <= self.health_port <= 65_535:
            raise ConfigError(f"--health-port must be 0..65535, got {self.health_port}")

    @property
    def liveness_stale_seconds(self) -> float:
        """/healthz fails once the loop has not turned for this long."""
        return max(60.0, 4 * self.read_interval_seconds)
