"""RBAC for tests: a ServiceAccount bound to a ClusterRole of the test's own rules, as a user who
writes (or trims) their own RBAC would have it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubernetes import client


def bind_cluster_role(
    api: client.ApiClient,
    namespace: str,
    account: str,
    role: str,
    rules: Sequence[dict[str, Any]],
) -> None:
    """Create ServiceAccount `namespace/account` and ClusterRole `role` with `rules`, bound by a
    ClusterRoleBinding also named `role`. The caller deletes the role and the binding (the
    ServiceAccount goes with its namespace)."""
    rbac = client.RbacAuthorizationV1Api(api)
    client.CoreV1Api(api).create_namespaced_service_account(
        namespace, {"metadata": {"name": account}}
    )
    rbac.create_cluster_role({"metadata": {"name": role}, "rules": list(rules)})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        }
    )
