"""The token verifier's caches against the real API server: what they keep, for how long, and
how many TokenReviews a crowd of callers costs."""

from __future__ import annotations

import base64
import json

import anyio
import pytest

from gpu_inventory.mcpserver import kube
from gpu_inventory.mcpserver.auth import AuthLimits, KubernetesTokenVerifier
from gpu_inventory.mcpserver.settings import DEFAULT_AUDIENCE
from gpu_inventory.testing.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


def verifier_on(cluster: ControlPlane, **options: object) -> KubernetesTokenVerifier:
    return KubernetesTokenVerifier(
        kube.api_client_factory(str(cluster.kubeconfig)),
        audiences=[DEFAULT_AUDIENCE],
        **options,  # type: ignore[arg-type]
    )


def jwt_claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def test_refused_tokens_never_push_an_accepted_caller_out_of_the_cache(
    cluster: ControlPlane, reader_token: str
) -> None:
    """Junk tokens cost their own small cache, not the accepted callers' one."""
    verifier = verifier_on(cluster, limits=AuthLimits(max_entries=4))
    assert await verifier.verify_token(reader_token) is not None

    for index in range(20):
        assert await verifier.verify_token(f"junk-{index}") is None
    assert verifier.reviews == 21

    assert await verifier.verify_token(reader_token) is not None
    assert verifier.reviews == 21  # still cached


async def test_a_crowd_with_one_new_token_costs_one_review(
    cluster: ControlPlane, reader_token: str
) -> None:
    verifier = verifier_on(cluster)
    verdicts: list[object] = []

    async def verify() -> None:
        verdicts.append(await verifier.verify_token(reader_token))

    async with anyio.create_task_group() as crowd:
        for _ in range(12):
            crowd.start_soon(verify)

    assert len(verdicts) == 12
    assert all(v is not None for v in verdicts)
    assert verifier.reviews == 1


async def test_an_accepted_verdict_never_outlives_the_token(
    cluster: ControlPlane, reader_token: str
) -> None:
    """The verdict carries the token's own `exp` (the SDK refuses an AccessToken past its
    expires_at), and the cache forgets it then, whatever its own time to live."""
    wall = [0.0]
    verifier = verifier_on(
        cluster, limits=AuthLimits(cache_seconds=3600), wall_clock=lambda: wall[0]
    )
    expires = jwt_claims(reader_token)["exp"]
    assert isinstance(expires, int)
    wall[0] = expires - 60.0

    verdict = await verifier.verify_token(reader_token)
    assert verdict is not None
    assert verdict.expires_at == expires
    await verifier.verify_token(reader_token)
    assert verifier.reviews == 1

    wall[0] = expires + 1.0
    await verifier.verify_token(reader_token)
    assert verifier.reviews == 2
