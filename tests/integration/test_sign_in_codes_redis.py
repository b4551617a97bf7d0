"""One-time codes on real Redis: right once, wrong tries burn the code, two redemptions at once make one token,
and the code itself is never stored."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from services.tracking.service_history import MAX_TRIES, HistoryUnavailable, OneTimeCodes
from shared.redis_client import make_redis

pytestmark = pytest.mark.asyncio


def codes_for(redis: aioredis.Redis, tag: str) -> OneTimeCodes:
    return OneTimeCodes(redis, key=b"test-key", ttl_s=60, prefix=f"khedmat:{tag}")


async def test_a_code_opens_once(redis_client: aioredis.Redis, tag: str) -> None:
    codes = codes_for(redis_client, tag)
    code = await codes.issue("subject")
    stored = [name async for name in redis_client.scan_iter(match=f"khedmat:{tag}:*")]
    values = [await redis_client.hgetall(name) for name in stored]
    assert code.encode() not in str(values).encode()  # only a keyed hash of it
    assert 0 < await redis_client.ttl(stored[0]) <= 60
    assert await codes.redeem("subject", code)
    assert not await codes.redeem("subject", code)


async def test_wrong_tries_burn_the_code(redis_client: aioredis.Redis, tag: str) -> None:
    codes = codes_for(redis_client, tag)
    code = await codes.issue("subject")
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(MAX_TRIES):
        assert not await codes.redeem("subject", wrong)
    assert not await codes.redeem("subject", code)  # burned: a guesser gets MAX_TRIES tries per texted code


async def test_two_redemptions_at_once_open_once(redis_client: aioredis.Redis, tag: str) -> None:
    codes = codes_for(redis_client, tag)
    code = await codes.issue("subject")
    outcomes = await asyncio.gather(*(codes.redeem("subject", code) for _ in range(10)))
    assert outcomes.count(True) == 1


async def test_without_redis_the_history_is_unavailable_not_weaker() -> None:
    redis = make_redis("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(HistoryUnavailable):
            await OneTimeCodes(redis, key=b"k").issue("subject")
        with pytest.raises(HistoryUnavailable):
            await OneTimeCodes(redis, key=b"k").redeem("subject", "123456")
    finally:
        await redis.aclose()
