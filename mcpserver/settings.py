"""The MCP server's options, read once from `GPU_INVENTORY_MCP_*` variables and the command line.

Pure: no I/O (the environment is passed in).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

ENV_PREFIX = "GPU_INVENTORY_MCP_"
Transport = Literal["stdio", "http"]
AuthMode = Literal["kubernetes", "none"]
LOCALHOST = ("127.0.0.1:*", "localhost:*", "[::1]:*")
DEFAULT_AUDIENCE = "gpu-inventory-mcp"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


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
    localhost, 127.0.0.1 and [::1] (any port) are always allowed, so `kubectl port-forward`
    works; in a cluster add the Service's names, e.g. `gpu-inventory-mcp.gpu-inventory.svc:*`."""

    kubeconfig: str | None = None
    """Kubeconfig file; default $KUBECONFIG, then the in-cluster ServiceAccount, then ~/.kube."""

    context: str | None = None
    """Kubeconfig context; default the current one."""

    auth: AuthMode = "kubernetes"
    """HTTP callers must bring a bearer token the API server accepts (TokenReview) and that may
    `get gpuinventories` (SubjectAccessReview). `none` is for local experiments only."""

    token_audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)
    """A caller's token must be meant for one of these audiences (`kubectl create token SA
    --audience gpu-inventory-mcp`). The MCP authorization spec: a server MUST only accept tokens
    issued for itself, so a token that could be replayed against the API server is refused."""

    allow_apiserver_audience: bool = False
    """Development only: also accept tokens meant for the API server itself (a plain
    `kubectl create token SA`), which the server could replay against the whole cluster."""

    auth_timeout_seconds: float = 5.0
    """How long one token check (TokenReview, then SubjectAccessReview) may take; past it the
    caller gets 503 and may retry with the same token."""

    auth_concurrency: int = 4
    """Token checks running at once, on threads of their own (tools never wait for them)."""

    auth_queue: int = 32
    """Token checks allowed to wait for a free slot; beyond that a new one is refused with 503."""

    auth_cache_seconds: float = 30.0
    """How long an accepted token (or one refused for lack of RBAC) is trusted without asking the
    API server again: a revoked token or binding keeps working at most this long."""

    auth_refusal_cache_seconds: float = 5.0
    """How long a token the API server rejected is refused without asking again."""

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
        if "allowed_hosts" in values:
            values["allowed_hosts"] = tuple(dict.fromkeys((*LOCALHOST, *values["allowed_hosts"])))
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
        if not self.token_audiences:
            raise ValueError(
                f"token_audiences must name at least one audience (default {DEFAULT_AUDIENCE!r})"
            )
        for name in sorted(_FLOATS):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        for name in ("auth_cache_seconds", "auth_refusal_cache_seconds", "max_staleness_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.auth_timeout_seconds <= 0:
            raise ValueError(f"auth_timeout_seconds must be > 0, got {self.auth_timeout_seconds}")
        if self.auth_concurrency < 1:
            raise ValueError(f"auth_concurrency must be >= 1, got {self.auth_concurrency}")
        if self.auth_queue < 0:
            raise ValueError(f"auth_queue must be >= 0, got {self.auth_queue}")
        if self.watch_timeout_seconds < 1:
            raise ValueError("watch_timeout_seconds must be >= 1")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {LOG_LEVELS}, got {self.log_level!r}")


_INTS = {"port", "watch_timeout_seconds", "auth_concurrency", "auth_queue"}
_FLOATS = {
    "auth_cache_seconds",
    "auth_refusal_cache_seconds",
    "auth_timeout_seconds",
    "max_staleness_seconds",
}
_BOOLS = {"allow_apiserver_audience"}
_LISTS = {"allowed_hosts", "token_audiences"}


def _convert(variable: str, field: str, raw: str) -> Any:
    if field in _INTS or field in _FLOATS:
        try:
            number = int(raw) if field in _INTS else float(raw)
        except ValueError:
            raise ValueError(f"{variable} must be a number, got {raw!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{variable} must be a finite number, got {raw!r}")
        return number
    if field in _BOOLS:
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise ValueError(f"{variable} must be true or false, got {raw!r}")
    if field in _LISTS:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw
