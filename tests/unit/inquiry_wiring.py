"""inquiry's record handler on faststream's in-memory broker, for unit tests of the handler only.

In production records come from `KeyOrderedConsumer` (tests/integration exercise it on real Kafka); here a
plain subscriber of the test broker hands each record over, and the broker's dead-letter policy stands in
for the consumer's identical one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.inquiry.adapters import IdentityAnswer
from services.inquiry.handlers import Inquiry, handle_request_record
from shared.envelope import cloudevent_headers, event_key, event_value
from shared.events import AnyEvent
from shared.kafka import make_router
from shared.topics import Topic


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


async def publish(br: KafkaBroker, event: AnyEvent, *, timestamp_ms: int | None = None) -> None:
    """Put an event on desk.requests of the test broker as intake does (CloudEvents headers, keyed)."""
    await br.publish(
        event_value(event),
        Topic.REQUESTS,
        key=event_key(event),
        headers=cloudevent_headers(event, source="/test"),
        timestamp_ms=timestamp_ms,
    )


def record_router(deps: Inquiry, *, group_id: str = "g") -> KafkaRouter:
    router = make_router()

    @router.subscriber(Topic.REQUESTS, group_id=group_id)
    async def on_record(message: KafkaMessage) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple)
        await handle_request_record(deps, record)
        await deps.marks.flush()  # the service flushes every 0.1 s; here before the next delivery

    return router
