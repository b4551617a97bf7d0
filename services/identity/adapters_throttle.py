"""identity's budgets, shared by its replicas through Redis (shared/rate_limits.py's moving window): sign-ins
per client address and per citizen (each sign-in may text someone), code checks per client address.

Unlike intake's limits these never fail open: a sign-in needs Redis for its code anyway, so a Redis failure is
answered 503 by the caller rather than counted nowhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from limits import RateLimitItem

from shared.rate_limits import parse_limits, retry_after_s, shared_moving_window

THROTTLE_PREFIX = "khedmat:identity:limit"


@dataclass(frozen=True)
class Budget:
    """One named budget: the limits that apply to one kind of key (a client address, a citizen's digest)."""

    scope: str
    items: list[RateLimitItem]


class Throttle:
    """Counts hits against budgets; `hit` returns 0 when allowed, else the seconds until a slot frees."""

    def __init__(self, redis: aioredis.Redis, *, prefix: str = THROTTLE_PREFIX) -> None:
        self._limiter = shared_moving_window(redis, key_prefix=prefix)

    @staticmethod
    def budget(scope: str, limits: str) -> Budget:
        return Budget(scope, parse_limits(limits))

    async def hit(self, *charges: tuple[Budget, str]) -> int:
        """Count one hit against each (budget, key) in turn; the first exhausted one stops the count and says
        how long to wait. Raises what Redis raises (shared.rate_limits.REDIS_FAILURES)."""
        for budget, key in charges:
            for item in budget.items:
                if not await self._limiter.hit(item, budget.scope, key):
                    stats = await self._limiter.get_window_stats(item, budget.scope, key)
                    return retry_after_s(stats.reset_time, time.time())
        return 0
