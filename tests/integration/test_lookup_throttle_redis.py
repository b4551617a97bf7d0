"""tracking's lookup throttle against the real Redis: replicas share the windows (a client's, a code's failures, a
code's anonymous successes) and the keys never name a code."""

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


def one_per_replica(tag: str, *clients: aioredis.Redis, **limits: str) -> list[LookupThrottle]:
    """A throttle on each client, as each replica builds its own; the windows are shared through Redis."""
    return [LookupThrottle(client, code_key=tag.encode(), key_prefix=prefix_for(tag), **limits) for client in clients]


async def test_two_replicas_share_the_client_budget(
    redis_client: aioredis.Redis, second_replica_redis: aioredis.Redis, tag: str
) -> None:
    replicas = one_per_replica(tag, redis_client, second_replica_redis, per_client="4/minute")
    decisions = [await replicas[i % 2].admit(client="10.0.0.1", tracking_code=code(i)) for i in range(6)]
    assert [d.allowed for d in decisions] == [True, True, True, True, False, False]
    assert {d.scope for d in decisions[4:]} == {"client"}
    assert all(1 <= d.retry_after_s <= 60 for d in decisions[4:])
    assert not any(d.degraded for d in decisions)


async def test_two_replicas_share_a_codes_failures_and_spare_its_owner(
    redis_client: aioredis.Redis, second_replica_redis: aioredis.Redis, tag: str
) -> None:
    replicas = one_per_replica(tag, redis_client, second_replica_redis, failures_per_code="3/minute")
    for i in range(3):
        assert (await replicas[i % 2].admit(client=f"10.0.1.{i}", tracking_code=code(42))).allowed
        await replicas[i % 2].settle(tracking_code=code(42), found=False)
    for replica in replicas:
        denied = await replica.admit(client="10.0.1.9", tracking_code=code(42))
        assert (denied.allowed, denied.scope, denied.degraded) == (False, "code", False)
        assert 55 <= denied.retry_after_s <= 60
        assert (await replica.admit(client="10.0.1.9", tracking_code=code(42), signed_in=True)).allowed
    assert (await replicas[0].admit(client="10.0.1.9", tracking_code=code(43))).allowed  # another code


async def test_two_replicas_share_a_codes_anonymous_successes_apart_from_its_failures(
    redis_client: aioredis.Redis, second_replica_redis: aioredis.Redis, tag: str
) -> None:
    replicas = one_per_replica(
        tag, redis_client, second_replica_redis, failures_per_code="100/minute", successes_per_code="2/minute"
    )
    for i in range(20):
        await replicas[i % 2].settle(tracking_code=code(44), found=False)
    assert (await replicas[0].admit(client="10.0.2.1", tracking_code=code(44))).allowed
    await replicas[0].settle(tracking_code=code(44), found=True)
    await replicas[1].settle(tracking_code=code(44), found=True)
    assert (await replicas[1].admit(client="10.0.2.1", tracking_code=code(44))).scope == "code"


async def test_redis_never_holds_the_tracking_code(redis_client: aioredis.Redis, tag: str) -> None:
    prefix = prefix_for(tag)
    throttle = LookupThrottle(redis_client, code_key=tag.encode(), key_prefix=prefix)
    tracked = code(123456789)
    assert (await throttle.admit(client="10.0.2.1", tracking_code=tracked)).allowed
    await throttle.settle(tracking_code=tracked, found=False)
    await throttle.settle(tracking_code=tracked, found=True)
    names = [name.decode() async for name in redis_client.scan_iter(match=f"{prefix}:*")]
    assert len(names) == 3  # the client's window, the code's failures and its successes
    assert not [name for name in names if tracked in name or tracked[:-1] in name]
    assert len([name for name in names if code_digest(tracked, tag.encode()) in name]) == 2
    assert [name for name in names if "10.0.2.1" in name]
