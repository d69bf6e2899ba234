"""Bearer-token auth for the HTTP transport, decided by the Kubernetes API server.

`KubernetesTokenVerifier` implements the SDK's `TokenVerifier`: a TokenReview says who the
caller is, then a SubjectAccessReview says whether they may `get` the `cluster` GPUInventory.
The SDK's middleware maps the outcome onto HTTP: no token or a token the API server rejects is
401 (`verify_token` returns None); an accepted token without the right carries no scope, so the
SDK's scope check (`REQUIRED_SCOPE` is the server's one required scope) answers 403. The same
RBAC rule that lets someone `kubectl get gpuinventory` lets them ask the MCP server.

Allowed results are cached for a short while, keyed by a SHA-256 of the token; the raw token is
never stored. The server's own credentials need `create` on tokenreviews and
subjectaccessreviews (the built-in `system:auth-delegator` ClusterRole).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import anyio.to_thread
from kubernetes import client
from mcp.server.auth.provider import AccessToken

from gpu_inventory.api import constants
from gpu_inventory.mcpserver import kube

log = logging.getLogger(__name__)

REQUIRED_SCOPE = f"{constants.INVENTORY_PLURAL}.{constants.GROUP}:get"
"""The scope an allowed caller's AccessToken carries; the HTTP app requires it."""


class KubernetesTokenVerifier:
    """TokenReview + SubjectAccessReview, with a short cache of allowed tokens."""

    def __init__(
        self,
        api_client_factory: Callable[[], client.ApiClient],
        *,
        audiences: Sequence[str] = (),
        cache_seconds: float = 30.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = api_client_factory
        self._audiences = list(audiences)
        self._cache_seconds = cache_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[AccessToken, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._api: client.ApiClient | None = None
        self.reviews = 0
        """TokenReviews sent so far (tests read it to prove the cache works)."""

    async def verify_token(self, token: str) -> AccessToken | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[1] > now:
                return hit[0]
            self._cache.pop(key, None)
        access = await anyio.to_thread.run_sync(self._review, token, key)
        if access is not None and REQUIRED_SCOPE in access.scopes and self._cache_seconds > 0:
            with self._lock:
                self._cache[key] = (access, now + self._cache_seconds)
                while len(self._cache) > self._max_entries:
                    self._cache.popitem(last=False)
        return access

    def _client(self) -> client.ApiClient:
        with self._lock:
            if self._api is None:
                self._api = self._factory()
            return self._api

    def _review(self, token: str, key: str) -> AccessToken | None:
        """Blocking: runs on a worker thread. None means 401."""
        try:
            api = self._client()
            self.reviews += 1
            spec: dict[str, Any] = {"token": token}
            if self._audiences:
                spec["audiences"] = self._audiences
            review = client.AuthenticationV1Api(api).create_token_review(
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
            )
            status = review.status
            if status is None or not status.authenticated or status.user is None:
                return None
            user = status.user
            access = client.AuthorizationV1Api(api).create_subject_access_review(
                {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "spec": {
                        "user": user.username,
                        "uid": user.uid,
                        "groups": user.groups,
                        "extra": user.extra,
                        "resourceAttributes": {
                            "group": constants.GROUP,
                            "resource": constants.INVENTORY_PLURAL,
                            "verb": "get",
                            "name": constants.INVENTORY_NAME,
                        },
                    },
                }
            )
        except Exception as error:
            # No verdict without the API server: refuse (401) and say why in the log only.
            log.warning("cannot review a bearer token: %s", kube.describe_error(error))
            return None
        allowed = bool(access.status and access.status.allowed)
        if not allowed:
            log.info("%s may not get gpuinventories: refusing with 403", user.username)
        return AccessToken(
            token=key,
            client_id=user.username or "",
            scopes=[REQUIRED_SCOPE] if allowed else [],
            subject=user.uid or user.username,
        )
