"""Nodes as a kubelet would leave them: there is no kubelet here, so tests write the status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client


def create_node(core: client.CoreV1Api, body: Mapping[str, Any]) -> str:
    """Create a Node (from `builders.make_node`) and write its status; its uid."""
    created = core.create_node(dict(body))
    if body.get("status"):
        core.patch_node_status(body["metadata"]["name"], {"status": body["status"]})
    return str(created.metadata.uid)


def reboot(core: client.CoreV1Api, name: str, boot_id: str) -> None:
    """What the kubelet reports after the node (re)boots: status.nodeInfo with a new bootID."""
    info = {
        "machineID": name,
        "systemUUID": name,
        "bootID": boot_id,
        "kernelVersion": "6.8.0",
        "osImage": "Ubuntu 24.04",
        "containerRuntimeVersion": "containerd://2.0.0",
        "kubeletVersion": "v1.34.4",
        "kubeProxyVersion": "",
        "operatingSystem": "linux",
        "architecture": "amd64",
    }
    core.patch_node_status(name, {"status": {"nodeInfo": info}})
