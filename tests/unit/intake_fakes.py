"""In-memory stand-ins for intake's Redis-backed guards, for handler tests that run without servers.

The real IdempotencyStore and RateLimits are tested against real Redis in tests/integration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.intake.adapters_guards import (
    Began,
    IdempotencyUnavailable,
    InFlight,
    Mismatch,
    RateDecision,
    Replay,
    validate_idempotency_key,
)


@dataclass
class AllowAll:
    """Rate limits that never refuse (or always refuse, with `deny_for`)."""

    deny_for: int | None = None
    hits: list[tuple[str, str | None]] = field(default_factory=list)

    async def hit(self, *, client: str, national_id: str | None) -> RateDecision:
        self.hits.append((client, national_id))
        if self.deny_for is not None:
            return RateDecision(allowed=False, retry_after_s=self.deny_for, scope="client", degraded=False)
        return RateDecision(allowed=True, retry_after_s=0, scope=None, degraded=False)

    async def hit_upload(self, *, client: str) -> RateDecision:
        self.hits.append((client, None))
        if self.deny_for is not None:
            return RateDecision(allowed=False, retry_after_s=self.deny_for, scope="upload_client", degraded=False)
        return RateDecision(allowed=True, retry_after_s=0, scope=None, degraded=False)


@dataclass
class MemoryIdempotency:
    """The IdempotencyStore's answers, kept in a dict; `down` makes every call fail as Redis would."""

    down: bool = False
    records: dict[str, tuple[str, str | None, int | None]] = field(default_factory=dict)

    def _check(self, key: str) -> None:
        validate_idempotency_key(key)
        if self.down:
            raise IdempotencyUnavailable("redis is down")

    async def begin(self, key: str, fingerprint: str) -> Began | Replay | Mismatch | InFlight:
        self._check(key)
        if key not in self.records:
            self.records[key] = (fingerprint, None, None)
            return Began()
        held, code, version = self.records[key]
        if held != fingerprint:
            return Mismatch()
        if code is None:
            return InFlight()
        return Replay(tracking_code=code, catalog_version=version)

    async def complete(
        self, key: str, fingerprint: str, tracking_code: str, *, catalog_version: int | None = None
    ) -> bool:
        self._check(key)
        self.records[key] = (fingerprint, tracking_code, catalog_version)
        return True

    async def abandon(self, key: str, fingerprint: str) -> bool:
        self._check(key)
        if self.records.get(key, (None,))[0] == fingerprint and self.records[key][1] is None:
            del self.records[key]
            return True
        return False
