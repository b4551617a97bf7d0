"""tracking's Kafka subscriber: fold every request event, in partition order, into the projection."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from shared.events import AcceptedEvent, StatusChanged, is_known_request_event, parse_request_event
from shared.kafka import make_router
from shared.topics import Topic

from .outbox import OutboxRelay
from .service import Position, Sessions, fold_event


@dataclass
class Tracking:
    """tracking's dependencies."""

    sessions: Sessions
    lookup_key: bytes
    relay: OutboxRelay


log = logging.getLogger(__name__)


def build_router(deps: Tracking, *, group_id: str) -> KafkaRouter:
    """The subscriber of tracking, bound to its dependencies."""
    router = make_router()
    router.publisher(Topic.STATUS, title="desk.status:StatusChanged", schema=StatusChanged)

    @router.subscriber(
        Topic.REQUESTS,
        group_id=group_id,
        auto_offset_reset="earliest",
        title="desk.requests:tracking",
        description="Folds every request event into the status projection; offsets are stored with the rows.",
    )
    async def on_request_event(body: dict[str, Any], message: KafkaMessage) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple)
        if not is_known_request_event(body):
            # A newer producer's event type: record nothing we cannot interpret, and do not block the partition.
            log.warning(
                "skipping unknown event type %r at %s[%d]@%d",
                body.get("event_type"),
                record.topic,
                record.partition,
                record.offset,
            )
            return
        event = parse_request_event(body)
        change = await fold_event(
            sessions=deps.sessions,
            event=event,
            position=Position(record.topic, record.partition, record.offset),
            lookup_key=deps.lookup_key,
            # A submission or command Kafka appended after intake had answered 503 never happened.
            void=isinstance(event, AcceptedEvent)
            and not event.counts(timestamp_ms=record.timestamp, timestamp_type=record.timestamp_type),
        )
        if change is not None:
            deps.relay.wakeup.set()

    return router
