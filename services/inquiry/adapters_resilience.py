"""inquiry's protection of the agencies: per-replica circuit breakers, a shared rate limit and an answer cache."""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import httpx
import redis.asyncio as aioredis
from limits import RateLimitItem, parse
from prometheus_client import Counter, Gauge

from shared.rate_limits import REDIS_FAILURES, shared_moving_window

from .adapters import AgencyUnavailable

log = logging.getLogger(__name__)

Attempt = Callable[[], Awaitable[httpx.Response]]
Clock = Callable[[], float]

# Same budget as intake's guards: a dead or hung Redis may cost one call about half a second, no retries.
# Everything a Redis call can raise when the server is down, hung or refuses the command.

RATE_LIMIT_PREFIX: Final = "khedmat:inq-rl"
CACHE_PREFIX: Final = "khedmat:inq-cache"

DAY_S: Final = 86400
# How long an agency's answer may be reused, per (agency, check); 0 means never cached. Checks not listed
# here are not cached either, so a new check is current until someone decides otherwise.
DEFAULT_CACHE_TTL_S: Final[Mapping[tuple[str, str], int]] = {
    # Births and deaths change rarely; a day-old answer is acceptable for e.g. a duplicate certificate.
    ("civil-registry", "identity"): DAY_S,
    # Registered addresses change rarely and a move is re-registered with the post office anyway.
    ("postal", "address"): 7 * DAY_S,
    # SIM cards change hands; an hour covers a citizen's retries without trusting a stale owner for long.
    ("mobile-registry", "ownership"): 3600,
    # These must be current at decision time: a debt paid, a conviction or a sale changes the decision.
    ("tax", "clearance"): 0,
    ("judiciary", "criminal-record"): 0,
    ("property-registry", "ownership"): 0,
}

BREAKER_STATE = Gauge(
    "khedmat_inquiry_breaker_state", "Circuit breaker state per agency (0 closed, 1 half-open, 2 open)", ["agency"]
)
BREAKER_TRANSITIONS = Counter(
    "khedmat_inquiry_breaker_transitions_total", "Circuit breaker state changes", ["agency", "to_state"]
)
CALLS = Counter(
    "khedmat_inquiry_calls_total",
    "Agency call attempts through the guard (ok, error, rejected_open, rate_limited)",
    ["agency", "outcome"],
)
RATE_LIMIT_FAIL_OPEN = Counter(
    "khedmat_inquiry_rate_limit_fail_open_total",
    "Agency rate limit checks allowed without counting because Redis failed",
    ["agency"],
)


class BreakerState(enum.IntEnum):
    """A breaker's state; the value is what the state gauge reports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


def is_failure_response(response: httpx.Response) -> bool:
    """True for 5xx and 429: the agency is down or overloaded (other 4xx mean it is up and answering)."""
    return response.status_code >= 500 or response.status_code == 429


# The breaker lives in each replica's memory, deliberately: opening after a few local failures is what stops
# this replica piling requests on a dying agency, and a shared breaker would add a Redis round trip to every
# call (and make Redis a dependency of failing fast). The rate limit, by contrast, is a budget the agency
# grants to Khedmat as a whole, so that one is shared through Redis.
class CircuitBreaker:
    """One agency's breaker: opens when `failure_threshold` of its last `window` calls failed, lets one trial
    through after a pause.

    A window rather than a run of consecutive failures: under concurrency an agency failing 30% of calls
    (which retries absorb) easily shows five failures in a row, and opening then would send healthy requests
    to manual review for nothing. Half of the last 50 calls failing happens to a dead agency within 25 calls,
    and to a 30%-flaky one almost never. `window=failure_threshold` gives "that many failures in a row".
    """

    def __init__(
        self,
        agency: str,
        *,
        failure_threshold: int = 25,
        window: int = 50,
        reset_timeout_s: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or window < failure_threshold or reset_timeout_s <= 0:
            raise ValueError("need 1 <= failure_threshold <= window and reset_timeout_s > 0")
        self.agency = agency
        self.failure_threshold = failure_threshold
        self.window = window
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._recent: deque[bool] = deque(maxlen=window)  # True for a failure, newest last
        self._failures = 0  # failures in _recent
        self._opened_at = 0.0
        self._trial_started_at: float | None = None
        BREAKER_STATE.labels(agency=agency).set(BreakerState.CLOSED)

    def _remember(self, failed: bool) -> None:
        if len(self._recent) == self.window and self._recent[0]:
            self._failures -= 1
        self._recent.append(failed)
        self._failures += failed

    def _forget(self) -> None:
        self._recent.clear()
        self._failures = 0

    def _move(self, to: BreakerState) -> None:
        if to is self._state:
            return
        self._state = to
        BREAKER_STATE.labels(agency=self.agency).set(to)
        BREAKER_TRANSITIONS.labels(agency=self.agency, to_state=to.name.lower()).inc()
        log.info("circuit breaker for %s is now %s", self.agency, to.name.lower())

    @property
    def state(self) -> BreakerState:
        """The current state, OPEN turning HALF_OPEN once the reset timeout has passed."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
            self._trial_started_at = None
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """Whether a call may go now; in HALF_OPEN only one trial at a time is let through."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        now = self._clock()
        # A trial that never reported back (a hung or lost task) must not keep the breaker shut for ever.
        if self._trial_started_at is not None and now - self._trial_started_at < self.reset_timeout_s:
            return False
        self._trial_started_at = now
        return True

    def record_success(self) -> None:
        """The agency answered: remember it, close a half-open breaker (with a clean window)."""
        # A late success while OPEN comes from a call started before opening; it is no trial, so it is ignored.
        if self._state is BreakerState.OPEN:
            return
        if self._state is BreakerState.HALF_OPEN:
            self._trial_started_at = None
            self._forget()
            self._move(BreakerState.CLOSED)
            return
        self._remember(False)

    def record_failure(self) -> None:
        """The agency gave no usable answer: count it, open at the threshold, reopen a half-open breaker."""
        if self._state is BreakerState.OPEN:
            return
        self._remember(True)
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._trial_started_at = None
            self._forget()
            self._move(BreakerState.OPEN)

    def release(self) -> None:
        """A let-through call ended without telling anything about the agency (cancelled, rate limited)."""
        self._trial_started_at = None


class AgencyRateLimit:
    """Per-agency call budgets shared by every replica through Redis; waits briefly for room, fails open."""

    def __init__(
        self,
        redis: aioredis.Redis,
        policies: Mapping[str, str],
        *,
        default: str | None = None,
        max_wait_s: float = 2.0,
        poll_s: float = 0.05,
        key_prefix: str = RATE_LIMIT_PREFIX,
    ) -> None:
        if max_wait_s < 0 or poll_s <= 0:
            raise ValueError("need max_wait_s >= 0 and poll_s > 0")
        self.policies: dict[str, RateLimitItem] = {agency: parse(limit) for agency, limit in policies.items()}
        self.default = parse(default) if default else None
        self.max_wait_s = max_wait_s
        self.poll_s = poll_s
        self._limiter = shared_moving_window(redis, key_prefix=key_prefix)

    def limit_for(self, agency: str) -> RateLimitItem | None:
        """The agency's limit, the default one, or None (unlimited)."""
        return self.policies.get(agency, self.default)

    async def acquire(self, agency: str) -> None:
        """Take one call from the agency's shared budget, waiting up to max_wait_s; else AgencyUnavailable."""
        item = self.limit_for(agency)
        if item is None:
            return
        deadline = time.monotonic() + self.max_wait_s
        try:
            while not await self._limiter.hit(item, "agency", agency):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AgencyUnavailable("rate limited locally")
                stats = await self._limiter.get_window_stats(item, "agency", agency)
                # Sleep towards the moment a slot frees, in small jittered steps so waiters do not wake together.
                until_free = max(stats.reset_time - time.time(), 0.0)
                step = min(max(until_free, self.poll_s / 5), self.poll_s) * random.uniform(0.8, 1.2)
                await asyncio.sleep(min(step, remaining))
        except REDIS_FAILURES as error:
            # Losing Redis must not stop inquiries: each replica's breaker still protects the agency.
            RATE_LIMIT_FAIL_OPEN.labels(agency=agency).inc()
            log.warning("agency rate limit unavailable, allowing the call to %s: %s", agency, type(error).__name__)


class ResilientGuard:
    """The adapters' CallGuard: breaker check, shared rate limit, then the attempt, whose outcome feeds the breaker."""

    def __init__(
        self,
        breakers: Mapping[str, CircuitBreaker] | Callable[[str], CircuitBreaker] | None = None,
        rate_limit: AgencyRateLimit | None = None,
    ) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}
        self._factory: Callable[[str], CircuitBreaker] = CircuitBreaker
        if callable(breakers):
            self._factory = breakers
        elif breakers is not None:
            self._breakers.update(breakers)
        self.rate_limit = rate_limit

    def breaker(self, agency: str) -> CircuitBreaker:
        """The agency's breaker, made by the factory (or with defaults) on first use."""
        found = self._breakers.get(agency)
        if found is None:
            found = self._breakers[agency] = self._factory(agency)
        return found

    async def __call__(self, agency: str, attempt: Attempt) -> httpx.Response:
        """Run one HTTP attempt at the agency unless its breaker is open or its budget stays exhausted."""
        breaker = self.breaker(agency)
        if not breaker.allow():
            CALLS.labels(agency=agency, outcome="rejected_open").inc()
            raise AgencyUnavailable("circuit open")
        if self.rate_limit is not None:
            try:
                await self.rate_limit.acquire(agency)
            except BaseException as error:
                # Not an answer from the agency: free a half-open trial slot, count nothing against it.
                breaker.release()
                if isinstance(error, AgencyUnavailable):
                    CALLS.labels(agency=agency, outcome="rate_limited").inc()
                raise
        try:
            response = await attempt()
        except (AgencyUnavailable, httpx.TransportError):
            breaker.record_failure()
            CALLS.labels(agency=agency, outcome="error").inc()
            raise
        except BaseException:
            # Cancellation or a bug of ours says nothing about the agency.
            breaker.release()
            raise
        if is_failure_response(response):
            breaker.record_failure()
            CALLS.labels(agency=agency, outcome="error").inc()
        else:
            breaker.record_success()
            CALLS.labels(agency=agency, outcome="ok").inc()
        return response


def canonical_inputs(inputs: Mapping[str, str]) -> bytes:
    """The inputs as JSON with sorted keys and no insignificant whitespace (UTF-8)."""
    return json.dumps(dict(inputs), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class AnswerCache:
    """Agency answers reused for a while where the policy allows; keys hold an HMAC of the inputs, never them."""

    def __init__(
        self,
        redis: aioredis.Redis,
        policies: Mapping[tuple[str, str], int] = DEFAULT_CACHE_TTL_S,
        *,
        hmac_key: bytes,
        prefix: str = CACHE_PREFIX,
    ) -> None:
        if not hmac_key:
            raise ValueError("hmac_key must not be empty")
        self.redis = redis
        self.policies = dict(policies)
        self.prefix = prefix
        self._hmac_key = hmac_key

    def ttl_s(self, agency: str, check: str) -> int:
        """Seconds an answer may be reused; 0 when this check is never cached."""
        return max(self.policies.get((agency, check), 0), 0)

    def key(self, agency: str, check: str, inputs: Mapping[str, str]) -> str:
        """The Redis key: agency and check in clear, the inputs (national IDs) only as an HMAC-SHA256."""
        digest = hmac.new(self._hmac_key, canonical_inputs(inputs), hashlib.sha256).hexdigest()
        return f"{self.prefix}:{agency}:{check}:{digest}"

    async def get(self, agency: str, check: str, inputs: Mapping[str, str]) -> dict[str, Any] | None:
        """The cached answer, or None on a miss, a non-cacheable check, a garbled value or a Redis failure."""
        if not self.ttl_s(agency, check):
            return None
        try:
            raw = await self.redis.get(self.key(agency, check, inputs))
        except REDIS_FAILURES as error:
            log.warning("answer cache unavailable for %s/%s: %s", agency, check, type(error).__name__)
            return None
        if raw is None:
            return None
        try:
            answer = json.loads(raw)
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    async def set(self, agency: str, check: str, inputs: Mapping[str, str], answer: Mapping[str, Any]) -> bool:
        """Store the answer for its policy's TTL; False when not cacheable or Redis failed."""
        ttl = self.ttl_s(agency, check)
        if not ttl:
            return False
        value = json.dumps(dict(answer), separators=(",", ":"), ensure_ascii=False)
        try:
            await self.redis.set(self.key(agency, check, inputs), value, ex=ttl)
        except REDIS_FAILURES as error:
            log.warning("answer cache not stored for %s/%s: %s", agency, check, type(error).__name__)
            return False
        return True
