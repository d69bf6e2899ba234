"""GPUs that Dynamic Resource Allocation (resource.k8s.io/v1) hands out.

Pure apart from `watching` (discovery and kopf registration): ResourceSlices, ResourceClaims
and DeviceClasses become small projections (`projections`), an incremental index keeps which
devices exist and which are allocated (`index`), and `accounting` counts one node's DRA GPUs
the way the scheduler sees them. Rules and their upstream sources are cited where they apply.
"""
