"""tracking's Kafka subscriber: fold every request event, in partition order, into the projection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from shared.events import AcceptedEvent, StatusChanged, is_known_request_event, parse_request_event
from shared.kafka import make_router
from shared.topics import Topic

from .outbox import OutboxRelay
from .service import Position, Sessions, fold_event, stored_offsets


@dataclass
class Tracking:
    """tracking's dependencies."""

    sessions: Sessions
    lookup_key: bytes
    relay: OutboxRelay


log = logging.getLogger(__name__)


class ResumeFromProjection(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, start each partition where the projection says, not where the group committed.

    The offsets stored in the projection's own transactions are the truth: Kafka's committed offset trails
    them (committed after the handler) or is lost (the group expired), and a projection with no offset for a
    partition (a new database) folds that partition from its first record, whatever the group committed
    (unless configured to start where the group did: TRACKING_NEW_PROJECTION_START=group).
    """

    def __init__(self, sessions: Sessions, *, new_projection_start: str = "beginning") -> None:
        self.sessions = sessions
        self.from_beginning = new_projection_start == "beginning"
        self.consumer: Callable[[], AIOKafkaConsumer | None] = lambda: None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self.consumer()
        if consumer is None or not assigned:
            return
        for topic in {tp.topic for tp in assigned}:
            stored = await stored_offsets(sessions=self.sessions, topic=topic)
            for tp in (tp for tp in assigned if tp.topic == topic):
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                elif self.from_beginning:
                    await consumer.seek_to_beginning(tp)
            log.info("resuming %s from the projection's offsets %s", topic, stored)


def build_router(deps: Tracking, *, group_id: str, new_projection_start: str = "beginning") -> KafkaRouter:
    """The subscriber of tracking, bound to its dependencies."""
    router = make_router()
    router.publisher(Topic.STATUS, title="desk.status:StatusChanged", schema=StatusChanged)
    resume = ResumeFromProjection(deps.sessions, new_projection_start=new_projection_start)
    subscriber = router.subscriber(
        Topic.REQUESTS,
        group_id=group_id,
        auto_offset_reset="earliest",
        listener=resume,
        title="desk.requests:tracking",
        description=(
            "Folds every request event into the status projection; offsets are stored with the rows, and each "
            "assigned partition resumes from them."
        ),
    )
    resume.consumer = lambda: getattr(subscriber, "consumer", None)

    @subscriber
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
