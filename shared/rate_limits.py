"""Rate limits shared by the replicas through Redis (the `limits` library's moving window), and what a Redis
call may raise when the server is down, hung or refuses the command. Each service decides what a failure
means for it: intake fails open, inquiry lets its breakers protect the agency, tracking falls back to limits
of its own process."""

from __future__ import annotations

import math
from typing import Final

import redis.asyncio as aioredis
from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

REDIS_FAILURES: Final = (RedisError, StorageError, OSError, TimeoutError)


def parse_limits(value: str) -> list[RateLimitItem]:
    """Limit strings such as "30/minute" or "30/minute;300/hour"; ValueError when none parses."""
    items = parse_many(value)
    if not items:
        raise ValueError(f"no rate limit in {value!r}")
    return items


def retry_after_s(reset_at: float, now: float) -> int:
    """Whole seconds from now until the window frees a slot, rounded up and never below 1."""
    return max(1, math.ceil(reset_at - now))


def shared_moving_window(redis: aioredis.Redis, *, key_prefix: str) -> MovingWindowRateLimiter:
    """A moving-window limiter on Redis: a denied hit records nothing, and the reset time is exactly when a
    slot frees. It uses the client's own connection pool (and short timeouts); the URI only names the scheme."""
    storage = RedisStorage(
        "async+redis://",
        implementation="redispy",
        key_prefix=key_prefix,
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )
    return MovingWindowRateLimiter(storage)
