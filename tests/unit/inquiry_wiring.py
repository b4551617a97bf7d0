"""inquiry's record handler on faststream's in-memory broker, for unit tests of the handler only.

In production records come from `KeyOrderedConsumer` (tests/integration exercise it on real Kafka); here a
plain subscriber of the test broker hands each record over, and the broker's dead-letter policy stands in
for the consumer's identical one.
"""

from __future__ import annotations

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.inquiry.handlers import Inquiry, handle_request_record
from shared.kafka import make_router
from shared.topics import Topic


def record_router(deps: Inquiry, *, group_id: str = "g") -> KafkaRouter:
    router = make_router()

    @router.subscriber(Topic.REQUESTS, group_id=group_id)
    async def on_record(message: KafkaMessage) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple)
        await handle_request_record(deps, record)
        await deps.marks.flush()  # the service flushes every 0.1 s; here before the next delivery

    return router
