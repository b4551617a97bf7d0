"""Sign-in codes on real Redis: right once, only with the mobile it was texted to, wrong tries burn the code,
two redemptions at once make one session, a second code waits for the cool-down, and the code itself is never
stored."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from services.identity.adapters_codes import CodesContended, SignInCodes
from services.identity.domain import CodePolicy
from shared.rate_limits import REDIS_FAILURES
from shared.redis_client import make_redis

pytestmark = pytest.mark.asyncio
MOBILE = "09121234567"
POLICY = CodePolicy(ttl_s=60, resend_after_s=30, max_tries=5)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def codes_for(redis: aioredis.Redis, tag: str, clock: Clock | None = None) -> SignInCodes:
    return SignInCodes(redis, key=b"test-key", policy=POLICY, prefix=f"khedmat:{tag}", clock=clock or Clock())


async def test_a_code_opens_once_and_only_with_its_mobile(redis_client: aioredis.Redis, tag: str) -> None:
    codes = codes_for(redis_client, tag)
    code = await codes.issue(subject="subject", mobile=MOBILE)
    assert code is not None and len(code) == 6
    stored = [name async for name in redis_client.scan_iter(match=f"khedmat:{tag}:*")]
    values = [await redis_client.hgetall(name) for name in stored]
    assert code.encode() not in str(values).encode() and MOBILE.encode() not in str(values).encode()
    assert 0 < await redis_client.ttl(stored[0]) <= POLICY.ttl_s
    assert not await codes.redeem(subject="subject", mobile="09351112233", code=code)  # not the mobile it went to
    assert await codes.redeem(subject="subject", mobile=MOBILE, code=code)
    assert not await codes.redeem(subject="subject", mobile=MOBILE, code=code)


async def test_wrong_tries_burn_the_code(redis_client: aioredis.Redis, tag: str) -> None:
    codes = codes_for(redis_client, tag)
    code = await codes.issue(subject="subject", mobile=MOBILE)
    assert code is not None
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(POLICY.max_tries):
        assert not await codes.redeem(subject="subject", mobile=MOBILE, code=wrong)
    assert not await codes.redeem(subject="subject", mobile=MOBILE, code=code)  # burnt: 5 guesses per texted code


async def test_a_second_code_waits_for_the_cool_down_and_a_late_code_opens_nothing(
    redis_client: aioredis.Redis, tag: str
) -> None:
    clock = Clock()
    codes = codes_for(redis_client, tag, clock)
    first = await codes.issue(subject="subject", mobile=MOBILE)
    clock.now += POLICY.resend_after_s - 1
    assert await codes.issue(subject="subject", mobile=MOBILE) is None  # nothing texted, the first code stands
    clock.now += 1
    second = await codes.issue(subject="subject", mobile=MOBILE)
    assert first is not None and second is not None
    clock.now += POLICY.ttl_s
    assert not await codes.redeem(subject="subject", mobile=MOBILE, code=second)


async def test_two_redemptions_at_once_open_once(redis_client: aioredis.Redis, tag: str) -> None:
    codes = codes_for(redis_client, tag)
    code = await codes.issue(subject="subject", mobile=MOBILE)
    assert code is not None
    outcomes = await asyncio.gather(
        *(codes.redeem(subject="subject", mobile=MOBILE, code=code) for _ in range(10)), return_exceptions=True
    )
    assert outcomes.count(True) == 1
    assert all(isinstance(outcome, bool | CodesContended) for outcome in outcomes)


async def test_without_redis_codes_fail_rather_than_weaken() -> None:
    redis = make_redis("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(REDIS_FAILURES):
            await SignInCodes(redis, key=b"k", policy=POLICY).issue(subject="subject", mobile=MOBILE)
        with pytest.raises(REDIS_FAILURES):
            await SignInCodes(redis, key=b"k", policy=POLICY).redeem(subject="subject", mobile=MOBILE, code="123456")
    finally:
        await redis.aclose()
