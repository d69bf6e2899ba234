"""The field names of the gateway's `get_gpu_inventory` JSON that came before this server.

`get_gpu_inventory` answers a superset of that JSON with these names unchanged, so assistants
and scripts written against it keep working; the tests check every level against these sets.
"""

from __future__ import annotations

from typing import Final

LEGACY_TOP: Final = frozenset({"status", "cluster_summary", "nodes"})
LEGACY_SUMMARY: Final = frozenset(
    {
        "total_nodes",
        "total_gpus",
        "gpus_allocatable",
        "gpus_allocated",
        "gpus_available",
        "gpu_types",
    }
)
LEGACY_NODE: Final = frozenset({"node_name", "pod_name", "status", "kubernetes", "gpus"})
LEGACY_KUBERNETES: Final = frozenset({"labels", "conditions", "gpu_resources"})
LEGACY_GPU_RESOURCES: Final = frozenset({"capacity", "allocatable", "allocated"})
LEGACY_GPU: Final = frozenset(
    {"index", "name", "uuid", "memory_total", "temperature", "utilization"}
)
