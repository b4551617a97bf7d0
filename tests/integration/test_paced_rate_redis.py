"""notify's provider pacing on the real Redis: two replicas share one window, so together they keep the rate."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from shared.rate_limits import PacedRate


async def test_two_replicas_share_one_window(
    redis_client: aioredis.Redis, second_replica_redis: aioredis.Redis, tag: str
) -> None:
    # Under khedmat:* and naming the tag, so the redis_client fixture deletes this test's keys afterwards.
    prefix = f"khedmat:pace:{tag}"
    first, second = (
        PacedRate(client, limit="4/second", name="sms-primary", key_prefix=prefix)
        for client in (redis_client, second_replica_redis)
    )
    for pacer in (first, second, first, second):
        await asyncio.wait_for(pacer.acquire(), 5)  # the window's four slots, two from each replica
    # A fifth call, from either replica, waits for the oldest slot to leave the one-second window: it cannot
    # be done in a tenth of a second however fast the machine (a lower bound, not a speed assertion).
    waiting = asyncio.create_task(second.acquire())
    done, _ = await asyncio.wait({waiting}, timeout=0.1)
    assert not done
    await asyncio.wait_for(waiting, 5)  # and it does go once the window moves
    assert await redis_client.keys(f"{prefix}*"), "the window lives in Redis, shared"
