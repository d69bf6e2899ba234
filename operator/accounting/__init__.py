"""Pure: no I/O. GPU accounting that must equal what kube-scheduler sees.

Three steps, each a plain function over plain data so it is tested without a cluster and runs
for 100,000 pods on every resync:

- `quantities`: Kubernetes quantity strings -> exact numbers; GPU counts are whole numbers.
- `podrequests`: which pods count on a node (`pod_counts`) and how many GPUs each holds
  (`pod_requests`, the `PodRequests` rule with sidecars, init containers and overhead).
- `totals`: allocations per node, with `available` floored per node (`aggregates` sums them).

No kopf, no kubernetes client, no clock: callers project API objects and pass them in.
"""

from gpu_inventory.operator.accounting.podrequests import (
    PodRequests,
    ResourceMatcher,
    pod_counts,
    pod_requests,
)
from gpu_inventory.operator.accounting.quantities import (
    MAX_COUNT,
    QuantityError,
    parse_count,
    parse_quantity,
)
from gpu_inventory.operator.accounting.totals import (
    NodeResources,
    ResourceCounts,
    node_totals,
)

__all__ = [
    "MAX_COUNT",
    "NodeResources",
    "PodRequests",
    "QuantityError",
    "ResourceCounts",
    "ResourceMatcher",
    "node_totals",
    "parse_count",
    "parse_quantity",
    "pod_counts",
    "pod_requests",
]
