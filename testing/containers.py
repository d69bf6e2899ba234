"""What a rendered container's process is started with, resolved as the kubelet resolves it.

Tests feed the result to our own command-line parsers, so a chart whose args or env a component
would not accept fails before any cluster runs it. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# kubernetes/third_party/forked/golang/expansion/expand.go: `$(NAME)` becomes the variable's
# value when the container defines it and stays as written when not; `$$` is a literal `$`.
_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


@dataclass(frozen=True)
class Pod:
    """The downward-API fields the chart reads."""

    name: str
    namespace: str
    node_name: str

    def field(self, path: str) -> str:
        fields = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "spec.nodeName": self.node_name,
        }
        if path not in fields:
            raise ValueError(f"fieldRef {path!r} is not one this test resolves")
        return fields[path]


def expand(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REFERENCE.sub(replace, text)


def environment(container: Mapping[str, Any], pod: Pod) -> dict[str, str]:
    """The container's env: literal values, downward-API fields, each expanded against the
    variables before it (the kubelet's order)."""
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = expand(str(var["value"]), env)
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = pod.field(var["valueFrom"]["fieldRef"]["fieldPath"])
        else:
            raise ValueError(f"env {var['name']}: only value and fieldRef are resolved here")
    return env


def argv(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """`command` + `args`, each expanded against the container's env."""
    return [expand(part, env) for part in [*container["command"], *container.get("args", [])]]
