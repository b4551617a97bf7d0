"""inquiry's shared agency rate limit and answer cache against the real Redis (and a dead one)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.inquiry.adapters import AgencyUnavailable
from services.inquiry.adapters_resilience import AgencyRateLimit, AnswerCache
from shared.redis_client import make_redis

NATIONAL_ID = "0012345679"
IDENTITY_INPUTS = {"national_id": NATIONAL_ID, "birth_date": "1951-03-20"}


@pytest.fixture
async def dead_redis() -> AsyncIterator[aioredis.Redis]:
    """A client pointed at a closed port: every call is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_redis(f"redis://127.0.0.1:{port}/0")
    yield client
    await client.aclose()


def fail_open_count(agency: str) -> float:
    return REGISTRY.get_sample_value("khedmat_inquiry_rate_limit_fail_open_total", {"agency": agency}) or 0.0


async def outcome(limit: AgencyRateLimit, agency: str, started: float) -> float | None:
    """Seconds after `started` when the acquire passed, or None when it was refused."""
    try:
        await limit.acquire(agency)
    except AgencyUnavailable:
        return None
    return time.monotonic() - started


async def ten_at_once_on_two_replicas(
    clients: tuple[aioredis.Redis, aioredis.Redis], agency: str, *, max_wait_s: float
) -> tuple[list[float | None], float]:
    """Ten acquires at once of the agency's 5/second budget, alternating between two replicas: when each
    passed (None: refused), and the seconds all of them took."""
    replicas = [AgencyRateLimit(client, {agency: "5/second"}, max_wait_s=max_wait_s) for client in clients]
    started = time.monotonic()
    results = await asyncio.gather(*(outcome(replicas[i % 2], agency, started) for i in range(10)))
    return results, time.monotonic() - started


async def test_two_replicas_share_one_budget_and_the_rest_are_refused(
    redis_client: aioredis.Redis, second_replica_redis: aioredis.Redis, tag: str
) -> None:
    results, elapsed = await ten_at_once_on_two_replicas((redis_client, second_replica_redis), tag, max_wait_s=0.2)
    passed = [at for at in results if at is not None]
    assert len(passed) == 5
    assert max(passed) < 0.5  # the five that fit went at once
    assert 0.2 <= elapsed < 1.0  # the others waited their max_wait, not the whole window


async def test_two_replicas_waiting_long_enough_all_pass_as_the_window_moves(
    redis_client: aioredis.Redis, second_replica_redis: aioredis.Redis, tag: str
) -> None:
    results, _ = await ten_at_once_on_two_replicas((redis_client, second_replica_redis), tag, max_wait_s=2.0)
    assert None not in results
    times = sorted(at for at in results if at is not None)
    assert times[4] < 0.5  # five at once
    assert 0.9 <= times[5] < 2.0  # the rest only once the first hits leave the one-second window


async def test_an_agency_without_a_limit_is_not_counted(redis_client: aioredis.Redis, tag: str) -> None:
    limit = AgencyRateLimit(redis_client, {f"{tag}-other": "1/minute"}, max_wait_s=0)
    for _ in range(20):
        await limit.acquire(tag)
    assert [name async for name in redis_client.scan_iter(match=f"khedmat:inq-rl*{tag}")] == []


async def test_a_default_limit_applies_to_unlisted_agencies(redis_client: aioredis.Redis, tag: str) -> None:
    limit = AgencyRateLimit(redis_client, {}, default="2/minute", max_wait_s=0)
    await limit.acquire(tag)
    await limit.acquire(tag)
    with pytest.raises(AgencyUnavailable, match="rate limited locally"):
        await limit.acquire(tag)


async def test_a_dead_redis_fails_open_at_once_and_is_counted(dead_redis: aioredis.Redis, tag: str) -> None:
    limit = AgencyRateLimit(dead_redis, {tag: "1/minute"}, max_wait_s=2.0)
    started = time.monotonic()
    for _ in range(3):
        await limit.acquire(tag)
    assert time.monotonic() - started < 2
    assert fail_open_count(tag) == 3


async def test_answer_cache_round_trip_with_the_policy_ttl(redis_client: aioredis.Redis, tag: str) -> None:
    cache = AnswerCache(redis_client, hmac_key=tag.encode())
    key = cache.key("civil-registry", "identity", IDENTITY_INPUTS)
    try:
        assert await cache.get("civil-registry", "identity", IDENTITY_INPUTS) is None
        answer = {"match": True, "alive": True, "name": "زهرا"}
        assert await cache.set("civil-registry", "identity", IDENTITY_INPUTS, answer) is True
        assert await cache.get("civil-registry", "identity", IDENTITY_INPUTS) == answer
        assert 86400 - 5 <= await redis_client.ttl(key) <= 86400
        other = {**IDENTITY_INPUTS, "birth_date": "1951-03-21"}
        assert await cache.get("civil-registry", "identity", other) is None
    finally:
        await redis_client.delete(key)


async def test_a_custom_policy_ttl_is_applied(redis_client: aioredis.Redis, tag: str) -> None:
    cache = AnswerCache(redis_client, {("postal", "address"): 120}, hmac_key=tag.encode())
    inputs = {"national_id": NATIONAL_ID, "postal_code": "1234567890"}
    key = cache.key("postal", "address", inputs)
    try:
        assert await cache.set("postal", "address", inputs, {"address": "تهران"}) is True
        assert 115 <= await redis_client.ttl(key) <= 120
    finally:
        await redis_client.delete(key)


async def test_non_cacheable_checks_are_never_stored(redis_client: aioredis.Redis, tag: str) -> None:
    cache = AnswerCache(redis_client, hmac_key=tag.encode())
    inputs = {"national_id": NATIONAL_ID}
    for agency, check in [("tax", "clearance"), ("judiciary", "criminal-record"), ("property-registry", "ownership")]:
        assert await cache.set(agency, check, inputs, {"clear": True}) is False
        assert await redis_client.exists(cache.key(agency, check, inputs)) == 0
        assert [name async for name in redis_client.scan_iter(match=f"khedmat:inq-cache:{agency}:{check}:*")] == []
        assert await cache.get(agency, check, inputs) is None


async def test_no_redis_key_holds_a_national_id(redis_client: aioredis.Redis, tag: str) -> None:
    cache = AnswerCache(redis_client, hmac_key=tag.encode())
    limit = AgencyRateLimit(redis_client, {tag: "5/second"})
    inputs = {
        ("civil-registry", "identity"): IDENTITY_INPUTS,
        ("postal", "address"): {"national_id": NATIONAL_ID, "postal_code": "1234567890"},
        ("mobile-registry", "ownership"): {"national_id": NATIONAL_ID, "mobile": "09121234567"},
    }
    created = [cache.key(agency, check, given) for (agency, check), given in inputs.items()]
    try:
        for (agency, check), given in inputs.items():
            assert await cache.set(agency, check, given, {"ok": True}) is True
        await limit.acquire(tag)
        names = [name.decode() async for name in redis_client.scan_iter(match="khedmat:inq-*", count=1000)]
        assert set(created) <= set(names)
        assert any(tag in name for name in names)  # the rate-limit key was seen too
        for name in names:
            assert NATIONAL_ID not in name
            assert "09121234567" not in name and "1234567890" not in name
    finally:
        for name in created:
            await redis_client.delete(name)


async def test_a_dead_redis_is_a_cache_miss_and_a_skipped_set(dead_redis: aioredis.Redis, tag: str) -> None:
    cache = AnswerCache(dead_redis, hmac_key=tag.encode())
    started = time.monotonic()
    assert await cache.get("civil-registry", "identity", IDENTITY_INPUTS) is None
    assert await cache.set("civil-registry", "identity", IDENTITY_INPUTS, {"match": True}) is False
    assert time.monotonic() - started < 2


async def test_a_garbled_cached_value_is_a_miss(redis_client: aioredis.Redis, tag: str) -> None:
    cache = AnswerCache(redis_client, hmac_key=tag.encode())
    key = cache.key("civil-registry", "identity", IDENTITY_INPUTS)
    try:
        await redis_client.set(key, b"not json", ex=60)
        assert await cache.get("civil-registry", "identity", IDENTITY_INPUTS) is None
        await redis_client.set(key, b"[1, 2]", ex=60)
        assert await cache.get("civil-registry", "identity", IDENTITY_INPUTS) is None
    finally:
        await redis_client.delete(key)
