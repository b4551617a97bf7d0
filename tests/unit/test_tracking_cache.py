"""The lookup cache is a help, never a dependency: without Redis, or with Redis down, it answers nothing and
raises nothing; its keys never hold a tracking code in clear."""

from __future__ import annotations

import asyncio

from services.tracking.adapters_cache import ChangeFeed, StatusCache
from shared.redis_client import make_redis

CODE = "123456789012345"


async def test_without_redis_the_cache_is_always_a_miss() -> None:
    cache = StatusCache(None, key=b"k")
    await cache.put(CODE, "d" * 64, {"status": "SUBMITTED"})
    assert await cache.get(CODE) is None
    await cache.changed([CODE])
    assert await cache.clear() == 0


async def test_with_redis_down_nothing_is_raised() -> None:
    redis = make_redis("redis://127.0.0.1:1/0")
    cache = StatusCache(redis, key=b"k")
    try:
        await cache.put(CODE, "d" * 64, {"status": "SUBMITTED"})
        assert await cache.get(CODE) is None
        await cache.changed([CODE])
    finally:
        await redis.aclose()


def test_keys_and_channels_never_hold_the_code() -> None:
    cache = StatusCache(None, key=b"k")
    assert CODE not in cache.entry(CODE) and CODE not in cache.channel(CODE)
    assert cache.entry(CODE) != StatusCache(None, key=b"other").entry(CODE)


async def test_a_stream_without_redis_still_wakes_by_its_poll_and_leaves_nothing_behind() -> None:
    feed = ChangeFeed(None, StatusCache(None, key=b"k"), poll_s=0.01)
    feed.start()
    assert feed._task is None  # nothing to listen to: the streams poll
    waiting = asyncio.create_task(feed.wait(CODE))
    await asyncio.sleep(0)
    assert feed._waiting  # registered while it waits
    await asyncio.wait_for(waiting, 1)  # woken by the poll, not left hanging
    assert feed._waiting == {}  # an ended stream leaves no waiter behind
    await feed.stop()
