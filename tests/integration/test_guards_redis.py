"""intake's Idempotency-Key records and rate limits against the real Redis (and a dead and a hung one)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.intake.adapters_guards import (
    Began,
    IdempotencyStore,
    IdempotencyUnavailable,
    InFlight,
    Mismatch,
    RateLimits,
    Replay,
    fingerprint,
    national_id_digest,
)
from shared.redis_client import make_redis
from testkit.infra import Servers

FP_A = fingerprint({"body": "a"})
FP_B = fingerprint({"body": "b"})
NATIONAL_ID = "0012345679"


def free_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def dead_redis() -> AsyncIterator[aioredis.Redis]:
    """A client pointed at a closed port: every call is refused."""
    client = make_redis(f"redis://127.0.0.1:{free_port()}/0")
    yield client
    await client.aclose()


@pytest.fixture
async def hung_redis() -> AsyncIterator[aioredis.Redis]:
    """A client of a server that accepts connections and never answers (a hung Redis)."""
    held: list[asyncio.StreamWriter] = []

    async def accept_and_stay_silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = make_redis(f"redis://127.0.0.1:{port}/0")
    yield client
    await client.aclose()
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


def fail_open_count() -> float:
    return REGISTRY.get_sample_value("khedmat_rate_limit_fail_open_total") or 0.0


def limits_for(client: aioredis.Redis, *, per_client: str, per_national_id: str, tag: str) -> RateLimits:
    # The HMAC key is per test so a national ID's counter from an earlier run never leaks into this one.
    return RateLimits(client, per_client=per_client, per_national_id=per_national_id, national_id_key=tag.encode())


async def test_begin_complete_then_replay_gives_the_same_tracking_code(redis_client: aioredis.Redis, tag: str) -> None:
    store = IdempotencyStore(redis_client)
    assert await store.begin(tag, FP_A) == Began()
    assert await store.complete(tag, FP_A, "123456789012345", catalog_version=3) is True
    assert await store.begin(tag, FP_A) == Replay(tracking_code="123456789012345", catalog_version=3)
    assert await store.begin(tag, FP_A) == Replay(tracking_code="123456789012345", catalog_version=3)


async def test_a_replay_without_a_recorded_catalog_version_says_none(redis_client: aioredis.Redis, tag: str) -> None:
    store = IdempotencyStore(redis_client)
    await store.begin(tag, FP_A)
    await store.complete(tag, FP_A, "123456789012345")
    assert await store.begin(tag, FP_A) == Replay(tracking_code="123456789012345", catalog_version=None)


async def test_another_body_with_the_same_key_is_a_mismatch(redis_client: aioredis.Redis, tag: str) -> None:
    store = IdempotencyStore(redis_client)
    pending, done = f"{tag}-pending", f"{tag}-done"
    assert await store.begin(pending, FP_A) == Began()
    assert await store.begin(pending, FP_B) == Mismatch()
    assert await store.begin(done, FP_A) == Began()
    await store.complete(done, FP_A, "111111111111111")
    assert await store.begin(done, FP_B) == Mismatch()


async def test_the_same_body_while_the_first_attempt_runs_is_in_flight(redis_client: aioredis.Redis, tag: str) -> None:
    store = IdempotencyStore(redis_client)
    assert await store.begin(tag, FP_A) == Began()
    assert await store.begin(tag, FP_A) == InFlight()


async def test_an_abandoned_attempt_may_be_retried_with_the_same_key(redis_client: aioredis.Redis, tag: str) -> None:
    store = IdempotencyStore(redis_client)
    assert await store.begin(tag, FP_A) == Began()
    assert await store.abandon(tag, FP_A) is True
    assert await redis_client.exists(IdempotencyStore.redis_key(tag)) == 0
    assert await store.begin(tag, FP_A) == Began()


async def test_only_the_owner_can_abandon_and_never_a_completed_record(redis_client: aioredis.Redis, tag: str) -> None:
    store = IdempotencyStore(redis_client)
    assert await store.begin(tag, FP_A) == Began()
    assert await store.abandon(tag, FP_B) is False
    assert await store.begin(tag, FP_A) == InFlight()  # still A's claim
    await store.complete(tag, FP_A, "222222222222222")
    assert await store.abandon(tag, FP_A) is False
    assert await store.begin(tag, FP_A) == Replay(tracking_code="222222222222222")


async def test_complete_does_not_overwrite_another_bodys_record(redis_client: aioredis.Redis, tag: str) -> None:
    store = IdempotencyStore(redis_client)
    assert await store.begin(tag, FP_B) == Began()
    assert await store.complete(tag, FP_A, "333333333333333") is False
    assert await store.begin(tag, FP_B) == InFlight()


async def test_pending_claims_and_records_expire(redis_client: aioredis.Redis, tag: str) -> None:
    store = IdempotencyStore(redis_client, ttl_s=3600, pending_ttl_s=30)
    name = IdempotencyStore.redis_key(tag)
    await store.begin(tag, FP_A)
    assert 0 < await redis_client.ttl(name) <= 30
    await store.complete(tag, FP_A, "444444444444444")
    assert 30 < await redis_client.ttl(name) <= 3600


async def test_a_pending_claim_that_expired_frees_the_key(redis_client: aioredis.Redis, tag: str) -> None:
    store = IdempotencyStore(redis_client, ttl_s=60, pending_ttl_s=1)
    assert await store.begin(tag, FP_A) == Began()
    await asyncio.sleep(1.2)
    assert await store.begin(tag, FP_B) == Began()


async def test_of_twenty_concurrent_attempts_exactly_one_begins(servers: Servers, tag: str) -> None:
    # Two clients (two replicas' pools) so the race also crosses connections.
    clients = [make_redis(servers.redis_url), make_redis(servers.redis_url)]
    stores = [IdempotencyStore(client) for client in clients]
    try:
        outcomes = await asyncio.gather(*(stores[i % 2].begin(tag, FP_A) for i in range(20)))
        assert outcomes.count(Began()) == 1
        assert outcomes.count(InFlight()) == 19
    finally:
        await clients[0].delete(IdempotencyStore.redis_key(tag))
        for client in clients:
            await client.aclose()


async def test_a_dead_redis_makes_idempotency_unavailable_at_once(dead_redis: aioredis.Redis) -> None:
    store = IdempotencyStore(dead_redis)
    started = time.monotonic()
    for call in (store.begin("k", FP_A), store.complete("k", FP_A, "1"), store.abandon("k", FP_A)):
        with pytest.raises(IdempotencyUnavailable):
            await call
    assert time.monotonic() - started < 2


async def test_a_hung_redis_makes_idempotency_unavailable_within_the_socket_timeout(hung_redis: aioredis.Redis) -> None:
    store = IdempotencyStore(hung_redis)
    started = time.monotonic()
    with pytest.raises(IdempotencyUnavailable):
        await store.begin("k", FP_A)
    # 0.5 s socket timeout and no retries; the bound leaves room for a slow CI machine.
    assert time.monotonic() - started < 2


async def test_a_client_gets_its_limit_then_a_retry_after(redis_client: aioredis.Redis, tag: str) -> None:
    limits = limits_for(redis_client, per_client="3/minute", per_national_id="100/hour", tag=tag)
    decisions = [await limits.hit(client=f"{tag}-10.0.0.1", national_id=None) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    denied = decisions[-1]
    assert denied.scope == "client"
    assert 1 <= denied.retry_after_s <= 60
    assert not denied.degraded
    assert (await limits.hit(client=f"{tag}-10.0.0.2", national_id=None)).allowed  # another client is unaffected


async def test_a_national_id_is_limited_whichever_client_sends_it(redis_client: aioredis.Redis, tag: str) -> None:
    limits = limits_for(redis_client, per_client="100/minute", per_national_id="2/hour", tag=tag)
    assert (await limits.hit(client=f"{tag}-a", national_id=NATIONAL_ID)).allowed
    assert (await limits.hit(client=f"{tag}-b", national_id="۰۰۱۲۳۴۵۶۷۹")).allowed  # same ID in Persian digits
    denied = await limits.hit(client=f"{tag}-c", national_id=NATIONAL_ID)
    assert not denied.allowed
    assert denied.scope == "national_id"
    assert 3000 < denied.retry_after_s <= 3600
    assert (await limits.hit(client=f"{tag}-c", national_id="0012345687")).allowed  # another person


async def test_redis_never_holds_the_national_id(redis_client: aioredis.Redis, tag: str) -> None:
    limits = limits_for(redis_client, per_client="100/minute", per_national_id="2/hour", tag=tag)
    await limits.hit(client=f"{tag}-a", national_id=NATIONAL_ID)
    digest = national_id_digest(NATIONAL_ID, tag.encode())
    names = [name.decode() async for name in redis_client.scan_iter(match="khedmat:rl:*")]
    assert not [name for name in names if NATIONAL_ID in name]
    mine = [name for name in names if digest in name]
    assert mine
    for name in mine:
        await redis_client.delete(name)


async def test_two_replicas_share_the_same_counters(servers: Servers, tag: str) -> None:
    clients = [make_redis(servers.redis_url), make_redis(servers.redis_url)]
    replicas = [limits_for(c, per_client="4/minute", per_national_id="100/hour", tag=tag) for c in clients]
    try:
        decisions = [await replicas[i % 2].hit(client=f"{tag}-shared", national_id=None) for i in range(6)]
        assert [d.allowed for d in decisions] == [True, True, True, True, False, False]
    finally:
        async for name in clients[0].scan_iter(match=f"khedmat:*{tag}*"):
            await clients[0].delete(name)
        for client in clients:
            await client.aclose()


async def test_a_dead_redis_lets_submissions_through_and_counts_it(
    dead_redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    limits = RateLimits(dead_redis, per_client="1/minute", per_national_id="1/hour", national_id_key=b"k")
    before = fail_open_count()
    with caplog.at_level(logging.WARNING, logger="services.intake.adapters_guards"):
        decisions = [await limits.hit(client="10.0.0.9", national_id=NATIONAL_ID) for _ in range(3)]
    assert all(d.allowed and d.degraded for d in decisions)
    assert fail_open_count() == before + 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "services.intake.adapters_guards"]
    assert len(warnings) == 3
    assert all("ConnectionError" in message and NATIONAL_ID not in message for message in warnings)


async def test_a_hung_redis_fails_open_within_the_socket_timeout(hung_redis: aioredis.Redis) -> None:
    limits = RateLimits(hung_redis, per_client="1/minute", per_national_id="1/hour", national_id_key=b"k")
    before = fail_open_count()
    started = time.monotonic()
    decision = await limits.hit(client="10.0.0.9", national_id=NATIONAL_ID)
    assert time.monotonic() - started < 2
    assert decision.allowed and decision.degraded
    assert fail_open_count() == before + 1


async def test_uploads_have_their_own_limit_per_client(redis_client: aioredis.Redis, tag: str) -> None:
    limits = RateLimits(
        redis_client,
        per_client="100/minute",
        per_national_id="100/hour",
        national_id_key=b"k",
        uploads_per_client="3/minute",
    )
    client = f"{tag}-10.0.0.7"
    decisions = [await limits.hit_upload(client=client) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    denied = decisions[-1]
    assert denied.scope == "upload_client"
    assert 1 <= denied.retry_after_s <= 60
    assert (await limits.hit_upload(client=f"{tag}-10.0.0.8")).allowed  # another client is unaffected
    # Uploads and submissions are counted apart: a client out of uploads may still submit.
    assert (await limits.hit(client=client, national_id=None)).allowed


async def test_a_dead_redis_lets_uploads_through_and_counts_it(dead_redis: aioredis.Redis) -> None:
    limits = RateLimits(dead_redis, per_client="1/minute", per_national_id="1/hour", national_id_key=b"k")
    before = fail_open_count()
    decisions = [await limits.hit_upload(client="10.0.0.9") for _ in range(3)]
    assert all(d.allowed and d.degraded for d in decisions)
    assert fail_open_count() == before + 3
