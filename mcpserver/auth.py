"""Bearer-token auth for the HTTP transport, decided by the Kubernetes API server.

`KubernetesTokenVerifier` implements the SDK's `TokenVerifier`. A TokenReview, sent with this
server's own audiences, says who the caller is; a SubjectAccessReview says whether they may `get`
the `cluster` GPUInventory (the same RBAC rule that lets them `kubectl get gpuinventory`).

Outcomes, as the SDK's middleware and `app.py` turn them into HTTP:
- no token, a malformed one (refused before any review), a token the API server rejects, one
  not meant for this server, or an anonymous identity: `None`, so 401;
- an accepted token without the RBAC right: an AccessToken with no scope, so 403;
- no verdict (the API server is unreachable, slow, or refuses this server's own credentials):
  `AuthUnavailableError`, which `app.py` answers with 503, so a client keeps a good token.

Audience (MCP authorization spec, "Token Audience Binding and Validation": servers MUST only
accept tokens issued for themselves): the TokenReview carries `spec.audiences`, and the answer's
`status.audiences` must contain one of them. Kubernetes documents why that check matters: a
TokenReview answer with empty `status.audiences` means the token is valid for the API server
itself (an authenticator that is not audience-aware), which is exactly the replayable kind
(authentication.k8s.io/v1 TokenReviewStatus.audiences). Only `allow_apiserver_audience` accepts
those, for development.

Anonymous (kubernetes/kubernetes#114165, #106142): TokenReview answers `authenticated: true`
for user `system:anonymous` (group `system:unauthenticated`) when it is handed a token with
leading whitespace, which the SDK passes on from `Authorization: Bearer  x`. So a token that is
not an RFC 6750 b64token is refused before any review, and an anonymous identity is refused
whatever the review says: a cluster that binds `system:unauthenticated` must not open this
server to callers without a credential.

Auth can never starve the tools: checks run on threads of their own (`auth_concurrency`, not the
thread pool that runs tools), at most `auth_queue` wait, each has a deadline, concurrent checks
of the same token share one review, and verdicts are cached (accepted and forbidden for
`auth_cache_seconds` but never past the token's own `exp`; rejected for
`auth_refusal_cache_seconds`, in a separate, smaller cache, so junk tokens can never push an
accepted caller out) keyed by a SHA-256 of the token; the raw token is never stored.
The server's own credentials need `create` on tokenreviews and subjectaccessreviews (the
built-in `system:auth-delegator` ClusterRole).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from kubernetes import client
from mcp.server.auth.provider import AccessToken

from gpu_inventory.api import constants
from gpu_inventory.mcpserver import kube

log = logging.getLogger(__name__)

REQUIRED_SCOPE = f"{constants.INVENTORY_PLURAL}.{constants.GROUP}:get"
"""The scope an allowed caller's AccessToken carries; the HTTP app requires it."""

ANONYMOUS_USER = "system:anonymous"
UNAUTHENTICATED_GROUP = "system:unauthenticated"
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
Service-account and OIDC tokens (JWTs) and bootstrap tokens all have this form."""
MAX_TOKEN_CHARS = 16_384
"""Longer than any real token; a longer one is refused rather than sent for review."""
_SLOT_POLL_SECONDS = 0.02


class _Ticket:
    """Who frees a review's slot: the thread once it runs, or its caller if the caller gave up
    before the thread started (whichever claims the ticket first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "pending"

    def claim(self, state: str) -> bool:
        with self._lock:
            if self._state != "pending":
                return False
            self._state = state
            return True


class AuthUnavailableError(Exception):
    """No verdict on a token right now; the HTTP app answers 503 with this message, which never
    carries what the API server said (that goes to the log)."""


def _no_verdict() -> AuthUnavailableError:
    return AuthUnavailableError(
        "the Kubernetes API server cannot judge bearer tokens right now; retry in a few seconds"
    )


def well_formed(token: str) -> bool:
    """The token has the syntax of a bearer token (RFC 6750 §2.1) and a sane length."""
    return len(token) <= MAX_TOKEN_CHARS and _B64TOKEN.fullmatch(token) is not None


def token_expiry(token: str) -> int | None:
    """The `exp` claim of a JWT (seconds since the epoch), None for other tokens. Read only
    after the API server accepted the token, so its signature has been checked."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    expiry = payload.get("exp") if isinstance(payload, dict) else None
    return expiry if isinstance(expiry, int) and not isinstance(expiry, bool) else None


def is_anonymous(user: Any) -> bool:
    return user.username == ANONYMOUS_USER or UNAUTHENTICATED_GROUP in (user.groups or ())


class _Pending:
    """A review in flight that later callers with the same token wait for."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.verdict: AccessToken | None = None
        self.error: AuthUnavailableError | None = None


@dataclass(frozen=True)
class AuthLimits:
    """How token checks are bounded (see `Settings` for each field's meaning)."""

    timeout_seconds: float = 5.0
    concurrency: int = 4
    queue: int = 32
    cache_seconds: float = 30.0
    refusal_cache_seconds: float = 5.0
    max_entries: int = 4096
    """Accepted (and forbidden) verdicts kept."""
    max_refusals: int = 1024
    """Refusals kept, apart: junk tokens never evict an accepted caller."""


class KubernetesTokenVerifier:
    """TokenReview (with this server's audiences) + SubjectAccessReview, bounded and cached."""

    def __init__(
        self,
        api_client_factory: Callable[[], client.ApiClient],
        *,
        audiences: Sequence[str],
        allow_apiserver_audience: bool = False,
        limits: AuthLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not audiences:
            raise ValueError("audiences must name at least one audience")
        self._factory = api_client_factory
        self._audiences = list(audiences)
        self._allow_apiserver = allow_apiserver_audience
        self._limits = limits or AuthLimits()
        self._clock = clock
        self._wall_clock = wall_clock
        self._accepted: OrderedDict[str, tuple[AccessToken, float]] = OrderedDict()
        self._refused: OrderedDict[str, float] = OrderedDict()
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._api: client.ApiClient | None = None
        # Review threads alive, abandoned ones included: a thread whose caller gave up keeps
        # its slot until its socket times out, so a hanging API server never gets more than
        # `concurrency` requests from us. (anyio's limiter alone frees the slot on abandon.)
        self._slots = threading.BoundedSemaphore(self._limits.concurrency)
        self._threads = anyio.CapacityLimiter(self._limits.concurrency)
        self._waiting = 0
        self._alive = 0
        self.reviews = 0
        """TokenReviews sent so far (tests read it to prove the caches work)."""
        self.peak_threads = 0
        """Most review threads alive at once (tests read it to prove the bound)."""

    async def verify_token(self, token: str) -> AccessToken | None:
        if not well_formed(token):
            log.info("refusing a malformed bearer token without a review")
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        refused, verdict = self._cached(key)
        if refused:
            return None
        if verdict is not None:
            return verdict
        pending = self._pending.get(key)
        if pending is not None:  # the same token is being reviewed: share that review
            await pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.verdict
        pending = self._pending[key] = _Pending()
        try:
            pending.verdict = await self._review_bounded(token, key)
        except AuthUnavailableError as error:
            pending.error = error
            raise
        except BaseException:
            pending.error = _no_verdict()
            raise
        finally:
            del self._pending[key]
            pending.done.set()
        self._remember(key, pending.verdict)
        return pending.verdict

    async def _review_bounded(self, token: str, key: str) -> AccessToken | None:
        """`_review` on an auth thread, within the concurrency, queue and time limits."""
        if self._waiting >= self._limits.concurrency + self._limits.queue:
            raise AuthUnavailableError(
                "too many bearer tokens are being checked at once; retry in a few seconds"
            )
        self._waiting += 1
        try:
            with anyio.fail_after(self._limits.timeout_seconds):
                # Polled: slots are given back by threads, abandoned ones too, which have no
                # event loop to set an anyio.Event on.
                while not self._slots.acquire(blocking=False):  # noqa: ASYNC110
                    await anyio.sleep(_SLOT_POLL_SECONDS)
                ticket = _Ticket()
                try:
                    return await anyio.to_thread.run_sync(
                        self._review_in_slot,
                        ticket,
                        token,
                        key,
                        limiter=self._threads,
                        abandon_on_cancel=True,
                    )
                except BaseException:
                    if ticket.claim("abandoned"):  # the thread never started: free its slot
                        self._slots.release()
                    raise
        except TimeoutError:
            log.warning(
                "the Kubernetes API server did not judge a bearer token within %gs",
                self._limits.timeout_seconds,
            )
            raise AuthUnavailableError(
                "the Kubernetes API server did not judge the bearer token in time; retry in a "
                "few seconds"
            ) from None
        finally:
            self._waiting -= 1

    # --- the caches -------------------------------------------------------------------------------

    def _cached(self, key: str) -> tuple[bool, AccessToken | None]:
        """(refused, verdict) while a cached verdict holds; (False, None) when none does."""
        now = self._clock()
        with self._lock:
            refused_until = self._refused.get(key)
            if refused_until is not None:
                if refused_until > now:
                    return True, None
                del self._refused[key]
            hit = self._accepted.get(key)
            if hit is None:
                return False, None
            verdict, until = hit
            expired = verdict.expires_at is not None and verdict.expires_at <= self._wall_clock()
            if until > now and not expired:
                return False, verdict
            del self._accepted[key]
            return False, None

    def _remember(self, key: str, verdict: AccessToken | None) -> None:
        now = self._clock()
        with self._lock:
            if verdict is None:
                if self._limits.refusal_cache_seconds > 0:
                    self._refused[key] = now + self._limits.refusal_cache_seconds
                    self._refused.move_to_end(key)
                    _bound(self._refused, self._limits.max_refusals)
            elif self._limits.cache_seconds > 0:
                self._accepted[key] = (verdict, now + self._limits.cache_seconds)
                self._accepted.move_to_end(key)
                _bound(self._accepted, self._limits.max_entries)

    # --- asking the API server (blocking: runs on the auth threads) -----------------------------

    def _client(self) -> client.ApiClient:
        with self._lock:
            if self._api is None:
                self._api = self._factory()
            return self._api

    def _review_in_slot(self, ticket: _Ticket, token: str, key: str) -> AccessToken | None:
        """`_review`, giving back the slot taken for it when the thread ends."""
        if not ticket.claim("running"):
            return None  # its caller gave up before this thread started, and freed the slot
        with self._lock:
            self._alive += 1
            self.peak_threads = max(self.peak_threads, self._alive)
        try:
            return self._review(token, key)
        finally:
            with self._lock:
                self._alive -= 1
            self._slots.release()

    def _review(self, token: str, key: str) -> AccessToken | None:
        """None means 401; an AccessToken without scope means 403."""
        try:
            api = self._client()
            user = self._authenticate(api, token)
            if user is None:
                return None
            allowed = self._authorize(api, user)
        except client.ApiException as error:
            if error.status in (400, 422):  # the API server calls the token malformed
                log.info("token review refused the token: %s", kube.describe_error(error))
                return None
            log.warning("cannot review a bearer token: %s", kube.describe_error(error))
            raise _no_verdict() from None
        except Exception as error:
            log.warning("cannot review a bearer token: %s", kube.describe_error(error))
            raise _no_verdict() from None
        if not allowed:
            log.info("%s may not get gpuinventories: refusing with 403", user.username)
        return AccessToken(
            token=key,
            client_id=user.username or "",
            scopes=[REQUIRED_SCOPE] if allowed else [],
            expires_at=token_expiry(token),
            subject=user.uid or user.username,
        )

    def _authenticate(self, api: client.ApiClient, token: str) -> Any:
        """The token's user if it is meant for this server (or, opted in, the API server) and
        is not anonymous."""
        user = None
        status = self._token_review(api, token, self._audiences)
        if status is not None and set(status.audiences or ()) & set(self._audiences):
            user = status.user
        elif status is not None:
            # Authenticated, but by an authenticator that is not audience-aware: the token is
            # one for the API server (TokenReviewStatus.audiences, see the module docstring).
            log.info("refusing a token not bound to audiences %s", self._audiences)
        if user is None and self._allow_apiserver:
            status = self._token_review(api, token, None)
            user = status.user if status is not None else None
        if user is not None and is_anonymous(user):
            log.info("refusing %s: an anonymous identity is no credential", user.username)
            return None
        return user

    def _token_review(self, api: client.ApiClient, token: str, audiences: list[str] | None) -> Any:
        """The TokenReview status if the token authenticated, else None."""
        self.reviews += 1
        spec: dict[str, Any] = {"token": token}
        if audiences:
            spec["audiences"] = audiences
        review = client.AuthenticationV1Api(api).create_token_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
            _request_timeout=self._request_timeout(),
        )
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            # Why (e.g. "invalid bearer token"), for whoever reads the log after a 401.
            reason = (status.error if status is not None else None) or "no reason given"
            log.info("the API server rejected a token: %s", reason)
            return None
        return status

    def _authorize(self, api: client.ApiClient, user: Any) -> bool:
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
            },
            _request_timeout=self._request_timeout(),
        )
        return bool(access.status and access.status.allowed)

    def _request_timeout(self) -> tuple[float, float]:
        """(connect, read) socket timeouts: an abandoned review thread ends by itself soon."""
        seconds = self._limits.timeout_seconds
        return (seconds, seconds)


def _bound(entries: OrderedDict[str, Any], most: int) -> None:
    """Drop the oldest entries beyond `most`."""
    while len(entries) > most:
        entries.popitem(last=False)
