"""Rate limits shared by the replicas through Redis (the `limits` library's moving window), and what a Redis
call may raise when the server is down, hung or refuses the command. Each service decides what a failure
means for it: intake fails open, inquiry lets its breakers protect the agency, tracking falls back to limits
of its own process."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

import redis.asyncio as aioredis
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

REDIS_FAILURES: Final = (RedisError, StorageError, OSError, TimeoutError)

log = logging.getLogger(__name__)


def parse_limits(value: str) -> list[RateLimitItem]:
    """Limit strings such as "30/minute" or "30/minute;300/hour"; ValueError when none parses."""
    items = parse_many(value)
    if not items:
        raise ValueError(f"no rate limit in {value!r}")
    return items


def retry_after_s(reset_at: float, now: float) -> int:
    """Whole seconds from now until the window frees a slot, rounded up and never below 1."""
    return max(1, math.ceil(reset_at - now))


ScopeT = TypeVar("ScopeT", bound=str)


@dataclass(frozen=True)
class LimitDecision(Generic[ScopeT]):
    """Whether a hit may go ahead; when denied, which limit (`scope`) and how many seconds until it may."""

    allowed: bool
    # Whole seconds until the denying limit frees a slot (at least 1 when denied); 0 when allowed.
    retry_after_s: int = 0
    scope: ScopeT | None = None
    # True when Redis failed and the decision was taken without it (each service says how).
    degraded: bool = False


async def first_denial(
    limiter: MovingWindowRateLimiter, items: Sequence[RateLimitItem], scope: ScopeT, identity: str
) -> LimitDecision[ScopeT] | None:
    """Count one hit of `identity` against each limit of `scope` in turn; the denial by the first one exhausted,
    or None. The limits after a denying one are not counted: a refused hit spends nothing else's budget."""
    for item in items:
        if not await limiter.hit(item, scope, identity):
            stats = await limiter.get_window_stats(item, scope, identity)
            return LimitDecision(allowed=False, retry_after_s=retry_after_s(stats.reset_time, time.time()), scope=scope)
    return None


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


class PacedRate:
    """Paces calls to one outside service (an SMS gateway, a mail relay) to its contract rate, across replicas.

    `acquire()` waits until the shared moving window (Redis) has room and takes the slot. When Redis fails, each
    process keeps the same window on its own, so the pace holds per replica (N replicas may reach N times the
    rate during the outage; the provider's own 429 is then retried like any other "try later").
    """

    def __init__(self, redis: aioredis.Redis, *, limit: str, name: str, key_prefix: str = "khedmat:pace") -> None:
        items = parse_limits(limit)
        if len(items) != 1:
            raise ValueError(f"one rate per service, such as 50/second, not {limit!r}")
        self.item = items[0]
        self.name = name
        self._shared = shared_moving_window(redis, key_prefix=key_prefix)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._degraded_since: float | None = None
        # While Redis is failing it is retried at most this often, so a hung Redis costs one timeout per
        # interval rather than one per send.
        self.retry_shared_every_s = 5.0

    async def _try(self, limiter: MovingWindowRateLimiter) -> float:
        """Take a slot (0.0), or say how long until one frees."""
        if await limiter.hit(self.item, self.name):
            return 0.0
        stats = await limiter.get_window_stats(self.item, self.name)
        return max(0.001, stats.reset_time - time.time())

    async def acquire(self) -> None:
        """Wait for, and take, one slot of the window."""
        while True:
            if self._degraded_since is not None and time.monotonic() - self._degraded_since < self.retry_shared_every_s:
                wait = await self._try(self._local)
            else:
                try:
                    wait = await self._try(self._shared)
                    if self._degraded_since is not None:
                        log.warning("pacing %s through Redis again", self.name)
                    self._degraded_since = None
                except REDIS_FAILURES as error:
                    if self._degraded_since is None:
                        log.warning("pacing %s per process: Redis failed (%s)", self.name, type(error).__name__)
                    self._degraded_since = time.monotonic()
                    wait = await self._try(self._local)
            if wait == 0.0:
                return
            await asyncio.sleep(wait)
