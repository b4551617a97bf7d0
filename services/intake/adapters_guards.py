"""intake's guards in front of submissions: Idempotency-Key records and shared rate limits, both in Redis."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import redis.asyncio as aioredis
from prometheus_client import Counter

from shared.domain.digits import normalize_digits
from shared.domain.identity import InvalidNationalId, normalize_national_id
from shared.rate_limits import REDIS_FAILURES, LimitDecision, first_denial, parse_limits, shared_moving_window

log = logging.getLogger(__name__)

# What a dead or hung Redis may cost one call: the budget is half a second, not redis-py's default retries.

IDEMPOTENCY_PREFIX: Final = "khedmat:idem:"
RATE_LIMIT_PREFIX: Final = "khedmat:rl"
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 128


RATE_LIMIT_FAIL_OPEN = Counter(
    "khedmat_rate_limit_fail_open_total", "Rate limit checks allowed without counting because Redis failed"
)


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class InvalidIdempotencyKey(ValueError):
    """The Idempotency-Key header is empty, longer than 128 characters or not printable ASCII."""


class IdempotencyUnavailable(RuntimeError):
    """Redis did not answer: the retry is refused rather than risking a duplicate request."""


@dataclass(frozen=True)
class Began:
    """The key is now claimed by this attempt: submit, then complete or abandon."""


@dataclass(frozen=True)
class Replay:
    """An earlier attempt with this key and body was accepted under this tracking code (and catalog version)."""

    tracking_code: str
    catalog_version: int | None = None


@dataclass(frozen=True)
class Mismatch:
    """The key was used with a different body."""


@dataclass(frozen=True)
class InFlight:
    """An attempt with this key and body has not finished yet."""


BeginOutcome = Began | Replay | Mismatch | InFlight


def validate_idempotency_key(key: str) -> str:
    """The key itself when it is 1..128 printable ASCII characters; else InvalidIdempotencyKey."""
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not all(" " <= char <= "~" for char in key):
        raise InvalidIdempotencyKey("an Idempotency-Key is 1 to 128 printable ASCII characters")
    return key


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """The body as JSON with sorted keys and no insignificant whitespace (UTF-8)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(body: bytes | Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of a request body, given as raw JSON bytes or already parsed."""
    parsed = json.loads(body) if isinstance(body, bytes) else body
    return hashlib.sha256(canonical_json(parsed)).hexdigest()


# One script, so two replicas racing on a key cannot both see it free (KEYS[1]=record, ARGV=fp, pending TTL).
_BEGIN = """
local record = redis.call('HMGET', KEYS[1], 'state', 'fp', 'code', 'version')
if not record[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
  return {'began'}
end
if record[2] ~= ARGV[1] then return {'mismatch'} end
if record[1] == 'done' then return {'replay', record[3], record[4] or ''} end
return {'inflight'}
"""

# Record the outcome unless another body owns the key (our pending claim expired and someone else took it).
_COMPLETE = """
local fp = redis.call('HGET', KEYS[1], 'fp')
if fp and fp ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'fp', ARGV[1], 'code', ARGV[2], 'version', ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# Delete only our own pending claim: never a completed record, never another body's claim.
_ABANDON = """
local record = redis.call('HMGET', KEYS[1], 'state', 'fp')
if record[1] == 'pending' and record[2] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class IdempotencyStore:
    """Idempotency-Key records in Redis: pending while an attempt runs, then the tracking code it got."""

    def __init__(self, redis: aioredis.Redis, *, ttl_s: int = 86400, pending_ttl_s: int = 60) -> None:
        if pending_ttl_s < 1 or ttl_s < pending_ttl_s:
            raise ValueError("need 1 <= pending_ttl_s <= ttl_s")
        self.redis = redis
        self.ttl_s = ttl_s
        self.pending_ttl_s = pending_ttl_s
        self._begin = redis.register_script(_BEGIN)
        self._complete = redis.register_script(_COMPLETE)
        self._abandon = redis.register_script(_ABANDON)

    @staticmethod
    def redis_key(key: str) -> str:
        """The Redis key holding the record of an Idempotency-Key (validated)."""
        return IDEMPOTENCY_PREFIX + validate_idempotency_key(key)

    async def begin(self, key: str, fingerprint: str) -> BeginOutcome:
        """Claim the key for this body, or report the replay, mismatch or attempt in flight it already holds."""
        name = self.redis_key(key)
        try:
            answer = await self._begin(keys=[name], args=[fingerprint, self.pending_ttl_s])
        except REDIS_FAILURES as error:
            raise IdempotencyUnavailable(type(error).__name__) from error
        kind = _text(answer[0])
        if kind == "began":
            return Began()
        if kind == "replay":
            version = _text(answer[2]) if len(answer) > 2 else None
            return Replay(tracking_code=_text(answer[1]) or "", catalog_version=int(version) if version else None)
        if kind == "mismatch":
            return Mismatch()
        return InFlight()

    async def complete(
        self, key: str, fingerprint: str, tracking_code: str, *, catalog_version: int | None = None
    ) -> bool:
        """Record the accepted tracking code for the full TTL; False when another body owns the key now."""
        name = self.redis_key(key)
        version = "" if catalog_version is None else str(catalog_version)
        try:
            stored = await self._complete(keys=[name], args=[fingerprint, tracking_code, self.ttl_s, version])
        except REDIS_FAILURES as error:
            raise IdempotencyUnavailable(type(error).__name__) from error
        return bool(stored)

    async def abandon(self, key: str, fingerprint: str) -> bool:
        """Release our pending claim so a failed attempt may be retried with the same key; True if released."""
        name = self.redis_key(key)
        try:
            deleted = await self._abandon(keys=[name], args=[fingerprint])
        except REDIS_FAILURES as error:
            raise IdempotencyUnavailable(type(error).__name__) from error
        return bool(deleted)


RateScope = Literal["client", "national_id", "upload_client"]


# Whether a submission or an upload may go ahead; `degraded` when Redis failed and it was let through uncounted.
RateDecision = LimitDecision[RateScope]


def national_id_digest(national_id: str, key: bytes) -> str:
    """HMAC-SHA256 (hex) of a national ID in canonical form, so Redis never holds the ID itself."""
    try:
        canonical = normalize_national_id(national_id)
    except InvalidNationalId:
        # Still counted, under a best-effort canonical form: Persian and ASCII digits must share one counter.
        canonical = normalize_digits(national_id).strip()
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


class RateLimits:
    """Rate limits shared by every replica through Redis: submissions per client address and per national ID,
    and anonymous document uploads per client address."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        per_client: str,
        per_national_id: str,
        national_id_key: bytes,
        uploads_per_client: str = "30/minute",
    ) -> None:
        if not national_id_key:
            raise ValueError("national_id_key must not be empty")
        self.per_client = parse_limits(per_client)
        self.per_national_id = parse_limits(per_national_id)
        self.uploads_per_client = parse_limits(uploads_per_client)
        self._national_id_key = national_id_key
        self._limiter = shared_moving_window(redis, key_prefix=RATE_LIMIT_PREFIX)

    async def hit(self, *, client: str, national_id: str | None) -> RateDecision:
        """Count one submission against the client's and the national ID's limits (fails open without Redis)."""
        try:
            denied: RateDecision | None = await first_denial(self._limiter, self.per_client, "client", client)
            if denied is None and national_id is not None:
                digest = national_id_digest(national_id, self._national_id_key)
                denied = await first_denial(self._limiter, self.per_national_id, "national_id", digest)
        except REDIS_FAILURES as error:
            return _fail_open(error)
        return denied or RateDecision(allowed=True)

    async def hit_upload(self, *, client: str) -> RateDecision:
        """Count one document upload against the client's upload limit (fails open without Redis)."""
        try:
            denied: RateDecision | None = await first_denial(
                self._limiter, self.uploads_per_client, "upload_client", client
            )
        except REDIS_FAILURES as error:
            return _fail_open(error)
        return denied or RateDecision(allowed=True)


def _fail_open(error: BaseException) -> RateDecision:
    # Losing Redis must not stop citizens from submitting: let the request through and make it visible.
    RATE_LIMIT_FAIL_OPEN.inc()
    log.warning("rate limit unavailable, allowing the request: %s", type(error).__name__)
    return RateDecision(allowed=True, degraded=True)
