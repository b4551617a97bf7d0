"""tracking's lookup throttle: a budget per client address and, per tracking code, separate budgets for the lookups
that fail and for the anonymous ones that succeed, shared by the replicas through Redis.

A lookup takes a tracking code and a national ID, so what an attacker enumerates is national IDs against a known
code (or codes against a known ID). Three windows bound it:

- **per client**: every lookup is counted before anything is read (the client's own budget; rotating addresses
  beats it, hence the next two);
- **failures per code**: only lookups that found nothing (a wrong national ID for the code, no such code, text that
  is no code) are counted, after the read. Once a code's failure window is full, anonymous lookups of that code
  answer 429 for everyone, so guessing a code's national ID stays bounded however many addresses guess;
- **successes per code**: an anonymous lookup that found the request is counted in a window of its own, generous
  (a scraping bound) and out of the guessers' reach: failures cannot fill it.

Both code windows are read before the lookup (without counting) and either being full answers 429, so the answer
to a full code is the same whatever national ID is sent: the throttle is never an oracle of the right one. A
lookup under the applicant's own session (`signed_in`) skips that gate and its success counts against nothing: a
stranger's failed guesses can lock anonymous lookups of a code, never its owner.

The gate reads and the counts after the read are not one atomic step: lookups of one code in flight at the same
moment may all pass the gate, so a failure window can overshoot by the number of those (each still bounded by
its client's budget). Each window is one Redis round trip (the `limits` library's moving window; a gate read
gives the count and the reset time at once).

Unlike intake's submission limits, which fail open, this throttle must never disappear: when Redis fails every
replica falls back to windows in its own memory with the same limits. That is looser (each replica counts on its
own, so N replicas allow up to N times the budget) but never unlimited.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Final, Literal, TypeVar, cast

import redis.asyncio as aioredis
from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, MovingWindowSupport
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from shared.domain.digits import normalize_digits, strip_separators
from shared.domain.tracking_code import InvalidTrackingCode, parse_tracking_code
from shared.rate_limits import (
    REDIS_FAILURES,
    LimitDecision,
    first_denial,
    parse_limits,
    retry_after_s,
    shared_moving_window,
)

log = logging.getLogger(__name__)

LOOKUP_THROTTLE_PREFIX: Final = "khedmat:tracking:lookup"

LOOKUP_THROTTLE_DEGRADED = Counter(
    "khedmat_tracking_lookup_throttle_degraded_total",
    "Lookup throttle decisions taken by the per-process fallback limiter because Redis failed",
)

LOOKUP_REFUSALS = Counter(
    "khedmat_tracking_lookup_refusals_total",
    "Lookups refused with 429, by the window that was full: client, code-failed (guessing at a code), code-found",
    ["window"],
)

# What a refusal names: the client's budget, or the code's (its failures or its anonymous successes).
LookupScope = Literal["client", "code"]
LookupDecision = LimitDecision[LookupScope]

# The windows' names in the limiter's keys.
CLIENT_WINDOW: Final = "client"
FAILURES_WINDOW: Final = "code-failed"
SUCCESSES_WINDOW: Final = "code-found"

T = TypeVar("T")


def code_digest(tracking_code: str, key: bytes) -> str:
    """HMAC-SHA256 (hex) of a tracking code in canonical form, so no key in Redis names a code.

    Text that is not a valid code is still digested (Persian digits and separators normalized), because a guess
    at a code that cannot exist must be counted like any other: answers must not differ between codes that exist
    and codes that do not.
    """
    try:
        canonical = parse_tracking_code(tracking_code)
    except InvalidTrackingCode:
        canonical = normalize_digits(strip_separators(tracking_code))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


async def first_full(
    limiter: MovingWindowRateLimiter, items: Sequence[RateLimitItem], window: str, identity: str
) -> LookupDecision | None:
    """The denial by the first of `items` whose window is full, counting nothing; None when all have room. One
    read per item gives both the count and when the oldest hit leaves the window."""
    storage = cast(MovingWindowSupport, limiter.storage)
    for item in items:
        oldest, count = await storage.get_moving_window(item.key_for(window, identity), item.amount, item.get_expiry())
        if count >= item.amount:
            return LookupDecision(
                allowed=False, retry_after_s=retry_after_s(oldest + item.get_expiry(), time.time()), scope="code"
            )
    return None


async def count_all(
    limiter: MovingWindowRateLimiter, items: Sequence[RateLimitItem], window: str, identity: str
) -> None:
    """Count one hit in each of `items` that has room (a full one stays full: nothing is refused here)."""
    for item in items:
        await limiter.hit(item, window, identity)


class LookupThrottle:
    """Lookup budgets per client and per tracking code, shared by the replicas through Redis.

    `admit` runs before the lookup reads anything; `settle` after it, with what it found. `redis=None` configures
    a per-process limiter only (a single replica, tests, a deployment without Redis); its decisions are not
    `degraded`, since nothing failed. With a Redis client, a Redis failure makes the per-process limiter answer
    instead, with `degraded=True`, a warning and `khedmat_tracking_lookup_throttle_degraded_total` counting it.
    Redis is tried again on every call, so the shared windows come back as soon as Redis does.
    """

    def __init__(
        self,
        redis: aioredis.Redis | None,
        *,
        per_client: str = "30/minute",
        failures_per_code: str = "10/minute",
        successes_per_code: str = "60/minute",
        code_key: bytes,
        key_prefix: str = LOOKUP_THROTTLE_PREFIX,
    ) -> None:
        if not code_key:
            raise ValueError("code_key must not be empty")
        self.per_client = parse_limits(per_client)
        self.failures_per_code = parse_limits(failures_per_code)
        self.successes_per_code = parse_limits(successes_per_code)
        self.key_prefix = key_prefix
        self._code_key = code_key
        self._shared: MovingWindowRateLimiter | None = None
        if redis is not None:
            self._shared = shared_moving_window(redis, key_prefix=key_prefix)
        # Always built, so a Redis failure finds it ready and its windows carry over between failures.
        self._local = MovingWindowRateLimiter(MemoryStorage())

    async def admit(self, *, client: str, tracking_code: str, signed_in: bool = False) -> LookupDecision:
        """Count the lookup against the client's budget and, unless it is the applicant's own session, refuse it
        while the code's failures or anonymous successes fill their window. Call it before looking anything up."""
        code = code_digest(tracking_code, self._code_key)

        async def decide(limiter: MovingWindowRateLimiter) -> tuple[LookupDecision, str | None]:
            # The client first: a client over its budget is refused before the code's windows are read.
            over = await first_denial(limiter, self.per_client, CLIENT_WINDOW, client)
            if over is not None:
                return LookupDecision(allowed=False, retry_after_s=over.retry_after_s, scope="client"), CLIENT_WINDOW
            if not signed_in:
                for window, items in (
                    (FAILURES_WINDOW, self.failures_per_code),
                    (SUCCESSES_WINDOW, self.successes_per_code),
                ):
                    full = await first_full(limiter, items, window, code)
                    if full is not None:
                        return full, window
            return LookupDecision(allowed=True), None

        (decision, window), degraded = await self._on_either(decide)
        if window is not None:
            LOOKUP_REFUSALS.labels(window).inc()
        return replace(decision, degraded=degraded) if degraded else decision

    async def settle(self, *, tracking_code: str, found: bool, signed_in: bool = False) -> None:
        """Count what the lookup found: a failure in the code's failure window, an anonymous success in its
        success window, the applicant's own success nowhere."""
        if found and signed_in:
            return
        code = code_digest(tracking_code, self._code_key)
        window, items = (
            (SUCCESSES_WINDOW, self.successes_per_code) if found else (FAILURES_WINDOW, self.failures_per_code)
        )

        async def count(limiter: MovingWindowRateLimiter) -> None:
            await count_all(limiter, items, window, code)

        await self._on_either(count)

    async def _on_either(self, use: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> tuple[T, bool]:
        """`use` on the shared windows, or on this process's when Redis fails; and whether it fell back."""
        if self._shared is None:
            return await use(self._local), False
        try:
            return await use(self._shared), False
        except REDIS_FAILURES as error:
            # Never unlimited: this replica's own windows decide until Redis answers again.
            LOOKUP_THROTTLE_DEGRADED.inc()
            # Neither the client nor the code: the log must not become a record of who looked up what.
            log.warning("lookup throttle: Redis unavailable, using the per-process limits: %s", type(error).__name__)
            return await use(self._local), True
