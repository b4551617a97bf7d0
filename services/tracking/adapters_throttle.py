"""tracking's lookup throttle: status lookups limited per client and per tracking code, shared through Redis.

A lookup takes a tracking code and a national ID, so what an attacker enumerates is national IDs against a
known code (or codes against a known ID). Limiting per client alone is beaten by rotating addresses, and
limiting per code alone lets one client sweep many codes: both limits apply. Unlike intake's submission
limits, which fail open, this one must never disappear: when Redis fails every replica falls back to a
limiter in its own memory with the same limits. That is looser (each replica counts on its own, so N replicas
allow up to N times the budget) but never unlimited.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, replace
from typing import Final, Literal

import redis.asyncio as aioredis
from limits import RateLimitItem
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from shared.domain.digits import normalize_digits, strip_separators
from shared.domain.tracking_code import InvalidTrackingCode, parse_tracking_code
from shared.rate_limits import REDIS_FAILURES, parse_limits, retry_after_s, shared_moving_window

log = logging.getLogger(__name__)

LOOKUP_THROTTLE_PREFIX: Final = "khedmat:tracking:lookup"

LOOKUP_THROTTLE_DEGRADED = Counter(
    "khedmat_tracking_lookup_throttle_degraded_total",
    "Lookup throttle decisions taken by the per-process fallback limiter because Redis failed",
)

LookupScope = Literal["client", "code"]


@dataclass(frozen=True)
class LookupDecision:
    """Whether a status lookup may go ahead; when denied, which limit and how many seconds until it may."""

    allowed: bool
    # Whole seconds until the denying limit frees a slot (at least 1 when denied); 0 when allowed.
    retry_after_s: int = 0
    scope: LookupScope | None = None
    # True when Redis failed and the per-process fallback limiter answered (looser across replicas).
    degraded: bool = False


def code_digest(tracking_code: str, key: bytes) -> str:
    """HMAC-SHA256 (hex) of a tracking code in canonical form, so no key in Redis names a code.

    Text that is not a valid code is still digested (Persian digits and separators normalized), because the
    throttle runs before the lookup and must count a guess at a non-existent code like any other: answers
    must not differ between codes that exist and codes that do not.
    """
    try:
        canonical = parse_tracking_code(tracking_code)
    except InvalidTrackingCode:
        canonical = normalize_digits(strip_separators(tracking_code))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


class LookupThrottle:
    """Status-lookup limits per client and per tracking code, shared by the replicas through Redis.

    `redis=None` configures a per-process limiter only (a single replica, tests, a deployment without
    Redis); its decisions are not `degraded`, since nothing failed: that is how it was set up. With a Redis
    client, a Redis failure makes the per-process limiter answer instead, with `degraded=True`, a warning
    and `khedmat_tracking_lookup_throttle_degraded_total` counting it. Redis is tried again on every hit,
    so the shared limits come back as soon as Redis does.
    """

    def __init__(
        self,
        redis: aioredis.Redis | None,
        *,
        per_client: str = "30/minute",
        per_code: str = "10/minute",
        code_key: bytes,
        key_prefix: str = LOOKUP_THROTTLE_PREFIX,
    ) -> None:
        if not code_key:
            raise ValueError("code_key must not be empty")
        self.per_client = parse_limits(per_client)
        self.per_code = parse_limits(per_code)
        self.key_prefix = key_prefix
        self._code_key = code_key
        self._shared: MovingWindowRateLimiter | None = None
        if redis is not None:
            self._shared = shared_moving_window(redis, key_prefix=key_prefix)
        # Always built, so a Redis failure finds it ready and its windows carry over between failures.
        self._local = MovingWindowRateLimiter(MemoryStorage())

    async def _check(
        self, limiter: MovingWindowRateLimiter, items: list[RateLimitItem], scope: LookupScope, identity: str
    ) -> LookupDecision | None:
        """Count one hit against each item in turn; the denial of the first item that is exhausted, else None."""
        for item in items:
            if not await limiter.hit(item, scope, identity):
                stats = await limiter.get_window_stats(item, scope, identity)
                return LookupDecision(
                    allowed=False, retry_after_s=retry_after_s(stats.reset_time, time.time()), scope=scope
                )
        return None

    async def _decide(self, limiter: MovingWindowRateLimiter, client: str, code: str) -> LookupDecision:
        # The client first: a client over its budget is refused without spending the code's budget.
        denied = await self._check(limiter, self.per_client, "client", client)
        if denied is None:
            denied = await self._check(limiter, self.per_code, "code", code)
        return denied or LookupDecision(allowed=True)

    async def hit(self, *, client: str, tracking_code: str) -> LookupDecision:
        """Count one lookup against the client's and the code's limits; call it before looking anything up."""
        code = code_digest(tracking_code, self._code_key)
        if self._shared is not None:
            try:
                return await self._decide(self._shared, client, code)
            except REDIS_FAILURES as error:
                # Never unlimited: this replica's own counters decide until Redis answers again.
                LOOKUP_THROTTLE_DEGRADED.inc()
                # Neither the client nor the code: the log must not become a record of who looked up what.
                log.warning(
                    "lookup throttle: Redis unavailable, using the per-process limits: %s", type(error).__name__
                )
                return replace(await self._decide(self._local, client, code), degraded=True)
        return await self._decide(self._local, client, code)
