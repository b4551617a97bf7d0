"""tracking's bus edges: its subscriptions (the projection's fold of desk.requests, the notification outcomes of
desk.notifications, the access records of desk.access) and publications, declared once, the consumer of the
projection, and the handlers of one notification outcome and one access record; with `Tracking`, what the routes
and handlers depend on.

The projection's consumer reads batches with aiokafka's `getmany` and folds each at once, in one transaction
with its offsets: faststream hands a subscriber one message at a time, and one transaction per event caps the
projection at a few hundred events a second on SQLite; a national desk (and a rebuild of its whole history)
needs thousands. The projection's own stored offsets are the truth: on every assignment each partition is
sought to them, and Kafka's committed offset is only advisory (monitoring of lag). desk.notifications is
consumed by a KeyOrderedConsumer, a consumer group of its own: the two topics are read independently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from opentelemetry.trace import SpanKind, TracerProvider
from prometheus_client import Counter, Histogram

from shared.envelope import decode_headers
from shared.events import AccessRecorded, EventBase, NotificationOutcome, RequestEvent, SlaBreached, StatusChanged
from shared.group_member import GroupMember
from shared.kafka import Consumer, DeadLetterPolicy, scrub
from shared.keyed_consumer import Record
from shared.settings import KafkaSettings
from shared.subscriptions import ConsumerParts, Kind, Publication, Subscription, read_event, read_record
from shared.topics import Topic

from .adapters_cache import ChangeFeed, StatusCache
from .adapters_throttle import LookupThrottle
from .domain import NO_NAMES, Names
from .domain_audit import entry_of
from .service import Delivered, Position, Projector, Sessions, record_notification, stored_offsets
from .service_audit import AccessChain

log = logging.getLogger(__name__)

# Every desk.requests event this build understands: the projection folds them all.
REQUEST_EVENTS: tuple[type[EventBase], ...] = typing.get_args(typing.get_args(RequestEvent)[0])
SUBSCRIPTION_DESCRIPTION = (
    "Folds every request event into the status projection, a fetched batch per transaction; offsets are stored "
    "with the rows, and each assigned partition resumes from them."
)
NOTIFICATIONS_DESCRIPTION = (
    "Keeps each notification's latest outcome (sent, then delivered or failed; never back) for the "
    "citizen's status answer."
)
ACCESS_DESCRIPTION = (
    "Appends each access record to its citizen's hash chain: one citizen's records in order (the key is the "
    "subject digest), those arriving together in one transaction; a redelivered record is stored once."
)


@dataclass
class Tracking:
    """tracking's dependencies."""

    sessions: Sessions
    lookup_key: bytes
    throttle: LookupThrottle
    cache: StatusCache
    changes: ChangeFeed
    stream_max_s: float = 1800.0
    # The catalog's names of agencies, for the citizen's list of who looked at their file.
    names: Names = NO_NAMES


FOLDED = Counter("khedmat_tracking_folded_events_total", "Records folded into the projection", ["projection"])
BATCH_SECONDS = Histogram(
    "khedmat_tracking_fold_batch_seconds",
    "Time to fold one batch in one transaction, retries included",
    ["projection"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def decode(record: ConsumerRecord[bytes, bytes], *, with_headers: bool = True) -> Delivered:
    """One record as the projection sees it; raises for a record that is not a valid request event.

    The headers (trace context) are for the live fold's spans; a rebuild has none and skips them.
    """
    position = Position(record.topic, record.partition, record.offset)
    read = read_record(record, REQUEST_EVENTS)
    if read is None:
        # A newer producer's event type: record nothing we cannot interpret, and do not block the partition.
        log.warning("skipping unknown event type at %s[%d]@%d", record.topic, record.partition, record.offset)
        return Delivered(position, None)
    headers = decode_headers(record.headers or ()) if with_headers else None
    # A submission or command Kafka appended after intake had answered 503 never happened: folded as void.
    return Delivered(position, read.event, not read.counts, headers)  # type: ignore[arg-type]


class ResumeFromProjection(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, start each partition where the projection says, not where the group committed.

    A partition the projection has no offset for (a new database) starts at its first record, or, with
    TRACKING_NEW_PROJECTION_START=group, where the group committed.
    """

    def __init__(self, projector: Projector, consumer: Callable[[], AIOKafkaConsumer | None], *, from_beginning: bool):
        self.projector = projector
        self.consumer = consumer
        self.from_beginning = from_beginning

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self.consumer()
        if consumer is None or not assigned:
            return
        for topic in {tp.topic for tp in assigned}:
            stored = await stored_offsets(sessions=self.projector.sessions, topic=topic, tables=self.projector.tables)
            for tp in (tp for tp in assigned if tp.topic == topic):
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                elif self.from_beginning:
                    await consumer.seek_to_beginning(tp)
            log.info("resuming %s from the projection's offsets %s", topic, stored)


class ProjectionConsumer(GroupMember):
    """Consumes a topic in batches and folds each batch into the projection; the live half of tracking."""

    loop_name = "fold"

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topic: str,
        group_id: str,
        projector: Projector,
        dead_letters: DeadLetterPolicy,
        client_id: str,
        tracer_provider: TracerProvider,
        new_projection_start: str = "beginning",
        max_batch: int = 500,
        on_folded: Callable[[int], None] = lambda changes: None,
    ) -> None:
        super().__init__(kafka, topic, group_id, dead_letters, client_id, tracer_provider, "khedmat.tracking.consumer")
        self.projector = projector
        self.from_beginning = new_projection_start == "beginning"
        self.max_batch = max_batch
        self.on_folded = on_folded
        self._folded = FOLDED.labels("live")
        self._seconds = BATCH_SECONDS.labels("live")

    def _listener(self) -> ConsumerRebalanceListener:
        return ResumeFromProjection(self.projector, lambda: self._consumer, from_beginning=self.from_beginning)

    async def stop(self) -> None:
        """Stop after the batch in hand is folded (or abandoned: it is refolded from the stored offsets)."""
        await self._stop_loop()
        await self._leave()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            fetched = await self._consumer.getmany(timeout_ms=500, max_records=self.max_batch)
            await self._record_lag_now_and_then(self._consumer)
            records = [record for batch in fetched.values() for record in batch]
            if records:
                await self.fold(records)

    async def _decode_all(self, records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[Delivered]:
        delivered = []
        for record in records:
            try:
                delivered.append(decode(record))
            except Exception as error:  # a record no build could read: park it with its reason, go on
                await self.dead_letters.dead_letter(record, error, attempts=1)
                delivered.append(Delivered(Position(record.topic, record.partition, record.offset), None))
        return delivered

    async def fold(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Fold one fetched batch, retrying (never skipping) while the database fails."""
        delivered = await self._decode_all(records)
        attempt = 0
        with (
            self._seconds.time(),
            # The batch's own span; each event's fold is a CONSUMER span in its request's trace (Projector).
            self.tracer.start_as_current_span(
                f"{self.topic} fold batch",
                kind=SpanKind.INTERNAL,
                attributes={"messaging.batch.message_count": len(records)},
            ),
        ):
            while True:
                attempt += 1
                try:
                    changes = await self.projector.fold_batch(delivered)
                    break
                except Exception as error:  # the database hiccuped or a replica raced us: the batch is refolded
                    delay = random.uniform(0, min(10.0, 0.2 * 2 ** min(attempt, 6)))
                    log.warning("fold failed (attempt %d), retrying in %.1fs: %s", attempt, delay, scrub(repr(error)))
                    await asyncio.sleep(delay)
        self._folded.inc(len(delivered))
        self.on_folded(len(changes))
        await self._commit_advisory(records)

    async def _commit_advisory(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        assert self._consumer is not None
        positions: dict[TopicPartition, OffsetAndMetadata] = {}
        for record in records:
            positions[TopicPartition(record.topic, record.partition)] = OffsetAndMetadata(record.offset + 1, "")
        assigned = self._consumer.assignment()
        positions = {tp: offset for tp, offset in positions.items() if tp in assigned}
        with contextlib.suppress(CommitFailedError, KafkaError):
            if positions:
                await self._consumer.commit(positions)


async def handle_notification_record(
    record: Record, *, sessions: Sessions, on_stored: Callable[[Iterable[str]], Awaitable[None]] | None = None
) -> None:
    """Keep one desk.notifications record's outcome as its notification's latest state, then tell `on_stored`
    which request changed (the lookup cache and live streams), like the fold's `on_committed`."""
    outcome = read_event(record, (NotificationOutcome,))
    if outcome is None:
        return
    if not await record_notification(sessions=sessions, outcome=outcome) or on_stored is None:
        return
    try:
        await on_stored({outcome.tracking_code})
    except Exception as error:  # the outcome is stored; a cache's TTL covers a missed notice
        log.warning("after-store notice failed: %s", type(error).__name__)


async def handle_access_record(record: Record, *, chain: AccessChain) -> None:
    """Append one desk.access record to its citizen's chain; returns once it is stored."""
    event = read_event(record, (AccessRecorded,))
    if event is not None:
        await chain.append(entry_of(event))


def subscriptions(
    *,
    group_id: str,
    projection: Callable[[Subscription, ConsumerParts], Consumer],
    max_batch: int,
    sessions: Sessions,
    on_stored: Callable[[Iterable[str]], Awaitable[None]],
    notifications_concurrency: int,
    access_chain: AccessChain,
    access_concurrency: int,
) -> list[Subscription]:
    """tracking's three subscriptions: the projection's fold of desk.requests, the notification outcomes, and
    the access records."""
    return [
        Subscription(
            name="tracking",
            topic=Topic.REQUESTS,
            group=group_id,
            events=REQUEST_EVENTS,
            description=SUBSCRIPTION_DESCRIPTION,
            kind=Kind.PROJECTION,
            projection=projection,
            concurrency=max_batch,
        ),
        Subscription(
            name="tracking",
            topic=Topic.NOTIFICATIONS,
            group=f"{group_id}-notifications",
            events=(NotificationOutcome,),
            description=NOTIFICATIONS_DESCRIPTION,
            handler=partial(handle_notification_record, sessions=sessions, on_stored=on_stored),
            concurrency=notifications_concurrency,
        ),
        Subscription(
            name="tracking",
            topic=Topic.ACCESS,
            group=f"{group_id}-access",
            events=(AccessRecorded,),
            description=ACCESS_DESCRIPTION,
            handler=partial(handle_access_record, chain=access_chain),
            concurrency=access_concurrency,
        ),
    ]


def projection_consumer(
    projector: Projector, *, new_projection_start: str, on_folded: Callable[[int], None]
) -> Callable[[Subscription, ConsumerParts], Consumer]:
    """Builds the projection's consumer from its declared subscription."""

    def build(subscription: Subscription, parts: ConsumerParts) -> Consumer:
        return ProjectionConsumer(
            **parts.arguments(),
            topic=subscription.topic,
            group_id=subscription.group,
            projector=projector,
            new_projection_start=new_projection_start,
            max_batch=subscription.concurrency,
            on_folded=on_folded,
        )

    return build


PUBLICATIONS = [
    Publication(Topic.STATUS, (StatusChanged,)),
    Publication(
        Topic.REQUESTS,
        (SlaBreached,),
        "The SLA watcher's one event per request past its due date (id derived from code and date).",
    ),
    Publication(
        Topic.ACCESS,
        (AccessRecorded,),
        "One record per lookup, live stream or history read, acknowledged by Kafka before the citizen's answer.",
    ),
]
