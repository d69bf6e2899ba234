"""The MCP server's options, read once from `GPU_INVENTORY_MCP_*` variables and the command line.

Pure: no I/O (the environment is passed in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

ENV_PREFIX = "GPU_INVENTORY_MCP_"
Transport = Literal["stdio", "http"]
AuthMode = Literal["kubernetes", "none"]
LOCALHOST = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Settings:
    transport: Transport = "stdio"
    """stdio for a local assistant (uses the kubeconfig); http for in-cluster use."""

    host: str = "127.0.0.1"
    """HTTP listen address. In a pod, 0.0.0.0."""

    port: int = 8080
    """HTTP listen port."""

    allowed_hosts: tuple[str, ...] = LOCALHOST
    """Host header values the HTTP app accepts (DNS-rebinding guard); `name:*` allows any port.
    In a cluster, add the Service's names, e.g. `gpu-inventory-mcp.gpu-inventory.svc:*`."""

    kubeconfig: str | None = None
    """Kubeconfig file; default $KUBECONFIG, then the in-cluster ServiceAccount, then ~/.kube."""

    context: str | None = None
    """Kubeconfig context; default the current one."""

    auth: AuthMode = "kubernetes"
    """HTTP callers must bring a bearer token the API server accepts (TokenReview) and that may
    `get gpuinventories` (SubjectAccessReview). `none` is for local experiments only."""

    token_audiences: tuple[str, ...] = ()
    """Audiences a caller's token must carry; empty means the API server's default."""

    auth_cache_seconds: float = 30.0
    """How long an accepted token is trusted without asking the API server again."""

    max_staleness_seconds: float = 300.0
    """After losing the API server, how long cached data is still served (with a warning)."""

    watch_timeout_seconds: int = 60
    """Server-side timeout of one WATCH request; it is reopened from the last version seen."""

    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Settings from `GPU_INVENTORY_MCP_<FIELD>` variables, then `overrides` (CLI flags).

        A malformed value raises `ValueError` naming the variable.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if name in environ:
                values[f.name] = _convert(name, f.name, environ[name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.transport not in get_args(Transport):
            raise ValueError(
                f"transport must be one of {get_args(Transport)}, got {self.transport!r}"
            )
        if self.auth not in get_args(AuthMode):
            raise ValueError(f"auth must be one of {get_args(AuthMode)}, got {self.auth!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be between 1 and 65535, got {self.port}")
        if not self.allowed_hosts:
            raise ValueError("allowed_hosts must name at least one host")
        if self.auth_cache_seconds < 0 or self.max_staleness_seconds < 0:
            raise ValueError("auth_cache_seconds and max_staleness_seconds must be >= 0")
        if self.watch_timeout_seconds < 1:
            raise ValueError("watch_timeout_seconds must be >= 1")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {LOG_LEVELS}, got {self.log_level!r}")


_INTS = {"port", "watch_timeout_seconds"}
_FLOATS = {"auth_cache_seconds", "max_staleness_seconds"}
_LISTS = {"allowed_hosts", "token_audiences"}


def _convert(variable: str, field: str, raw: str) -> Any:
    try:
        if field in _INTS:
            return int(raw)
        if field in _FLOATS:
            return float(raw)
    except ValueError:
        raise ValueError(f"{variable} must be a number, got {raw!r}") from None
    if field in _LISTS:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw
