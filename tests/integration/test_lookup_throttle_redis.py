"""tracking's lookup throttle against the real Redis: replicas share one budget, keys never name a code."""

from __future__ import annotations

import redis.asyncio as aioredis

from services.tracking.adapters_throttle import LookupThrottle, code_digest
from shared.domain.tracking_code import verhoeff_check_digit


def code(n: int) -> str:
    """A valid tracking code (right length and check digit), distinct for each n."""
    body = f"{n:014d}"
    return body + verhoeff_check_digit(body)


def prefix_for(tag: str) -> str:
    # Under khedmat:* and naming the tag, so the redis_client fixture deletes this test's keys afterwards.
    return f"khedmat:tracking:lookup:{tag}"


def one_per_replica(tag: str, *clients: aioredis.Redis, per_client: str, per_code: str) -> list[LookupThrottle]:
    """A throttle on each client, as each replica builds its own; the budgets are shared through Redis."""
    return [
        LookupThrottle(
            client, per_client=per_client, per_code=per_code, code_key=tag.encode(), key_prefix=prefix_for(tag)
        )
        for client in clients
    ]


async def test_two_replicas_share_the_client_budget(
    redis_client: aioredis.Redis, second_replica_redis: aioredis.Redis, tag: str
) -> None:
    replicas = one_per_replica(tag, redis_client, second_replica_redis, per_client="4/minute", per_code="100/minute")
    decisions = [await replicas[i % 2].hit(client="10.0.0.1", tracking_code=code(i)) for i in range(6)]
    assert [d.allowed for d in decisions] == [True, True, True, True, False, False]
    assert {d.scope for d in decisions[4:]} == {"client"}
    assert all(1 <= d.retry_after_s <= 60 for d in decisions[4:])
    assert not any(d.degraded for d in decisions)


async def test_two_replicas_share_the_code_budget(
    redis_client: aioredis.Redis, second_replica_redis: aioredis.Redis, tag: str
) -> None:
    replicas = one_per_replica(tag, redis_client, second_replica_redis, per_client="100/minute", per_code="3/minute")
    decisions = [await replicas[i % 2].hit(client=f"10.0.1.{i}", tracking_code=code(42)) for i in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[3].scope == "code"
    assert not decisions[3].degraded
    assert (await replicas[0].hit(client="10.0.1.9", tracking_code=code(43))).allowed  # another code


async def test_redis_never_holds_the_tracking_code(redis_client: aioredis.Redis, tag: str) -> None:
    prefix = prefix_for(tag)
    throttle = LookupThrottle(redis_client, code_key=tag.encode(), key_prefix=prefix)
    tracked = code(123456789)
    assert (await throttle.hit(client="10.0.2.1", tracking_code=tracked)).allowed
    names = [name.decode() async for name in redis_client.scan_iter(match=f"{prefix}:*")]
    assert names
    assert not [name for name in names if tracked in name or tracked[:-1] in name]
    assert [name for name in names if code_digest(tracked, tag.encode()) in name]
    assert [name for name in names if "10.0.2.1" in name]
