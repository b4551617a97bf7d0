"""inquiry's record handler driven as its KeyOrderedConsumer drives it, for unit tests of the handler.

Each event becomes a fake desk.requests record handed to `handle_request_record` through the consumer's own
`process_record` (its retries and dead-lettering); what inquiry publishes, dead letters included, goes to
faststream's in-memory broker, where the tests' spies read it. The consumer's fetching and commits are
exercised on real Kafka in tests/integration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.inquiry.adapters import IdentityAnswer
from services.inquiry.consumers import Inquiry, handle_request_record
from shared.events import AnyEvent
from shared.kafka import DeadLetterPolicy
from shared.keyed_consumer import Record, process_record
from shared.topics import Topic
from tests.unit.records import record_of


@dataclass
class FakeRegistry:
    """A civil registry answering from memory, counting its calls."""

    answer: IdentityAnswer = field(default_factory=lambda: IdentityAnswer(match=True, alive=True))
    error: Exception | None = None
    calls: list[tuple[str, date]] = field(default_factory=list)

    async def check_identity(self, *, national_id: str, birth_date: date) -> IdentityAnswer:
        self.calls.append((national_id, birth_date))
        if self.error is not None:
            raise self.error
        return self.answer


@dataclass
class Feed:
    """Hands desk.requests records to inquiry's handler one after another, as its consumer would."""

    deps: Inquiry
    dead_letters: DeadLetterPolicy = field(default_factory=lambda: DeadLetterPolicy(base_delay_s=0.0))
    offset: int = 0

    def __post_init__(self) -> None:
        self.dead_letters.broker = self.deps.broker  # dead letters go where the tests' spies listen

    async def deliver(self, event: AnyEvent | dict[str, Any], *, timestamp_ms: int | None = None) -> None:
        """One record of `event`, appended at `timestamp_ms` (now unless given), processed to its end."""

        async def handle(record: Record, _attempt: int) -> None:
            await handle_request_record(self.deps, record)

        record = record_of(Topic.REQUESTS, event, offset=self.offset, timestamp_ms=timestamp_ms)
        self.offset += 1
        await process_record(record, handle=handle, dead_letters=self.dead_letters)
        await self.deps.marks.flush()  # the service flushes every 0.1 s; here before the next delivery
