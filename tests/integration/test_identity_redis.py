"""identity and the shared verifier on real Redis and the real sandbox registry (over HTTP): what is stored when
notify or the registry fails (nothing), the budgets, refresh-token rotation and reuse under concurrency, and
revocation as every service reads it, failing closed when Redis is gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from sandbox.agencies import registered_mobile
from sandbox.runner import SandboxEndpoints
from services.identity.adapters_keys import SigningKeys
from services.identity.adapters_sessions import SessionStore
from services.identity.app import create_app
from services.identity.domain import open_session, subject_handle
from services.identity.settings import IdentitySettings
from shared.redis_client import make_redis
from shared.sessions import SessionRefused, SessionsUnavailable, SessionVerifier, StaticKeys, citizen_claims
from shared.settings import RedisSettings
from testkit.data import living_national_id
from testkit.infra import Servers
from tests.problems import assert_problem

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]
HASH_KEY = "integration-hash-key"


@pytest.fixture
async def identity(servers: Servers, sandbox: SandboxEndpoints) -> AsyncIterator[httpx.AsyncClient]:
    """identity in this process against the sandbox registry; notify is nowhere (nothing listens on port 1)."""
    settings = IdentitySettings(
        registry_url=sandbox.agencies_url,
        notify_url="http://127.0.0.1:1",
        hash_key=HASH_KEY,
        sign_in_limit_per_national_id="2/minute",
        redis=RedisSettings(url=servers.redis_url),
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://identity") as client,
    ):
        yield client


async def stored_for(redis: aioredis.Redis, national_id: str) -> list[bytes]:
    subject = subject_handle(HASH_KEY.encode(), national_id)
    return [name async for name in redis.scan_iter(match=f"khedmat:identity:code:{subject}*")]


async def test_when_notify_cannot_text_the_code_it_is_a_503_and_nothing_stays_stored(
    identity: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    nid = living_national_id()
    answer = await identity.post(
        "/api/v1/identity/sign-in", json={"national_id": nid, "mobile": registered_mobile(nid)}
    )
    assert_problem(answer, 503, slug="sign-in-unavailable")
    assert answer.headers["retry-after"] == "30"
    assert await stored_for(redis_client, nid) == []


async def test_when_the_registry_is_down_it_is_a_503_and_nothing_is_stored(
    identity: httpx.AsyncClient, sandbox: SandboxEndpoints, redis_client: aioredis.Redis
) -> None:
    nid = living_national_id()
    async with httpx.AsyncClient(base_url=sandbox.agencies_url) as control:
        (await control.put("/control/faults/mobile-registry", json={"error_rate": 1.0})).raise_for_status()
        body = {"national_id": nid, "mobile": registered_mobile(nid)}
        assert_problem(await identity.post("/api/v1/identity/sign-in", json=body), 503)
        stats = (await control.get("/control/stats")).json()["mobile-registry"]
        (await control.delete("/control/faults")).raise_for_status()
    assert stats["errors"] == 2  # both attempts of the retry budget met the fault
    assert await stored_for(redis_client, nid) == []


async def test_a_stranger_mobile_is_a_202_storing_nothing_and_the_citizens_budget_then_says_429(
    identity: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    nid = living_national_id()
    stranger = {"national_id": nid, "mobile": "09350000000"}
    answers = [await identity.post("/api/v1/identity/sign-in", json=stranger) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [202, 202]
    assert answers[0].json() == {"expires_in_s": 120, "resend_after_s": 60}
    assert await stored_for(redis_client, nid) == []
    refused = assert_problem(answers[2], 429, slug="rate-limited")
    assert int(answers[2].headers["retry-after"]) >= 1 and refused["title_fa"]


async def test_a_malformed_national_id_is_a_422_that_does_not_echo_it(identity: httpx.AsyncClient) -> None:
    answer = await identity.post("/api/v1/identity/sign-in", json={"national_id": "0012345678", "mobile": "0912"})
    problem = assert_problem(answer, 422)
    assert {error["code"] for error in problem["errors"]} == {"national_id_invalid", "mobile_invalid"}
    assert "0012345678" not in answer.text


@pytest.fixture
def keys() -> SigningKeys:
    return SigningKeys.ephemeral()


def token_for(keys: SigningKeys, *, session_id: str, subject: str, issued_at: float) -> str:
    return keys.sign(
        citizen_claims(
            national_id="0012345679",
            mobile="09121234567",
            session_id=session_id,
            subject_handle=subject,
            issued_at=issued_at,
            expires_at=int(issued_at) + 300,
            token_id="t",
        )
    )


async def test_revocation_as_every_service_reads_it(redis_client: aioredis.Redis, keys: SigningKeys, tag: str) -> None:
    store = SessionStore(redis_client, revoked_ttl_s=370)
    check = SessionVerifier(StaticKeys(keys.public_key_set()), redis_client)
    now = time.time()
    signed_out, kept, subject = f"{tag}-a", f"{tag}-b", f"{tag}-subject"
    assert await check.verify(token_for(keys, session_id=signed_out, subject=subject, issued_at=now))
    await store.revoke(signed_out)
    with pytest.raises(SessionRefused):
        await check.verify(token_for(keys, session_id=signed_out, subject=subject, issued_at=now))
    assert 0 < await redis_client.ttl(f"khedmat:sessions:revoked:{signed_out}") <= 370

    earlier = token_for(keys, session_id=kept, subject=subject, issued_at=now - 0.002)
    await store.revoke_subject(subject, at=now - 0.001, keep_s=60)
    with pytest.raises(SessionRefused):
        await check.verify(earlier)  # a millisecond before the sign-out everywhere
    assert await check.verify(token_for(keys, session_id=kept, subject=subject, issued_at=now))


async def test_without_redis_a_session_cannot_be_checked_and_is_not_assumed_valid(keys: SigningKeys) -> None:
    gone = make_redis("redis://127.0.0.1:1/0")
    try:
        check = SessionVerifier(StaticKeys(keys.public_key_set()), gone)
        with pytest.raises(SessionsUnavailable):
            await check.verify(token_for(keys, session_id="s", subject="h", issued_at=time.time()))
    finally:
        await gone.aclose()


async def test_a_refresh_token_is_fresh_once_and_a_racing_second_use_is_reuse(
    redis_client: aioredis.Redis, tag: str
) -> None:
    store = SessionStore(redis_client, revoked_ttl_s=370)
    session = open_session(
        session_id=f"{tag}-s",
        national_id="0012345679",
        mobile="09121234567",
        subject="h",
        now=time.time(),
        lifetime_s=60,
    )
    token = await store.open(session)
    uses = await asyncio.gather(*(store.use_refresh_token(token) for _ in range(10)))
    assert sorted(use.kind for use in uses) == ["fresh"] + ["reused"] * 9
    assert {use.session_id for use in uses} == {session.session_id}
    assert (await store.use_refresh_token("never-issued")).kind == "unknown"
    assert await store.load(session.session_id) == session
    stored = [name async for name in redis_client.scan_iter(match="khedmat:identity:refresh:*")]
    assert token.encode() not in b"".join(stored)  # only its digest names the key
    await store.revoke(session.session_id)
    assert await store.load(session.session_id) is None
