"""In-memory stand-ins for intake's Redis-backed guards and its publish to Kafka, for handler tests that run
without servers.

The real IdempotencyStore and RateLimits are tested against real Redis in tests/integration.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import RecordMetadata, TopicPartition

from services.intake.adapters_guards import (
    Began,
    IdempotencyUnavailable,
    InFlight,
    Mismatch,
    RateDecision,
    Replay,
    validate_idempotency_key,
)
from shared.events import LOG_APPEND_TIME_TYPE
from shared.topics import Topic


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


def metadata(timestamp_ms: int, timestamp_type: int = LOG_APPEND_TIME_TYPE) -> RecordMetadata:
    """What Kafka answers for a record of desk.requests appended at `timestamp_ms`."""
    topic = Topic.REQUESTS.value
    return RecordMetadata(topic, 0, TopicPartition(topic, 0), 42, timestamp_ms, timestamp_type, 0)


@dataclass
class FakePublish:
    """Stands in for intake's publish of a submission or a command: records each event and answers as Kafka
    would."""

    late_by_ms: int | None = None  # None: stamped now; else appended this long after accept_by
    timestamp_type: int = LOG_APPEND_TIME_TYPE
    error: Exception | None = None
    hang: bool = False
    published: list[Any] = field(default_factory=list)

    async def __call__(self, event: Any) -> RecordMetadata:
        self.published.append(event)
        if self.error is not None:
            raise self.error
        if self.hang:
            await asyncio.sleep(3600)
        if self.late_by_ms is None:
            return metadata(int(datetime.now(UTC).timestamp() * 1000), self.timestamp_type)
        return metadata(int(event.accept_by.timestamp() * 1000) + self.late_by_ms, self.timestamp_type)
