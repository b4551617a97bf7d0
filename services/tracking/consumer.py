"""tracking's consumer of `desk.requests`: batches of records, each folded in one transaction with its offsets.

faststream hands a subscriber one message at a time, and one transaction per event caps the projection at a
few hundred events a second on SQLite; a national desk (and a rebuild of its whole history) needs thousands.
So tracking reads with aiokafka's `getmany` and folds each fetched batch at once. The projection's own stored
offsets are the truth: on every assignment each partition is sought to them, and Kafka's committed offset is
only advisory (monitoring of lag).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from opentelemetry.trace import SpanKind, TracerProvider
from prometheus_client import Counter, Histogram

from shared.envelope import decode_headers
from shared.events import AcceptedEvent, is_known_request_event, parse_request_event
from shared.kafka import LAG_EVERY_S, DeadLetterPolicy, make_consumer, record_lag, scrub
from shared.settings import KafkaSettings

from .service import Delivered, Position, Projector, stored_offsets

log = logging.getLogger(__name__)

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
    payload = json.loads(record.value) if record.value is not None else None
    if not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    if not is_known_request_event(payload):
        # A newer producer's event type: record nothing we cannot interpret, and do not block the partition.
        log.warning("skipping unknown event type at %s[%d]@%d", record.topic, record.partition, record.offset)
        return Delivered(position, None)
    event = parse_request_event(payload)
    headers = decode_headers(record.headers or ()) if with_headers else None
    # A submission or command Kafka appended after intake had answered 503 never happened.
    void = isinstance(event, AcceptedEvent) and not event.counts(
        timestamp_ms=record.timestamp, timestamp_type=record.timestamp_type
    )
    return Delivered(position, event, void, headers)


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


class ProjectionConsumer:
    """Consumes a topic in batches and folds each batch into the projection; the live half of tracking."""

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
        self.kafka = kafka
        self.topic = topic
        self.group_id = group_id
        self.projector = projector
        self.dead_letters = dead_letters
        self.client_id = client_id
        self.tracer = tracer_provider.get_tracer("khedmat.tracking.consumer")
        self.from_beginning = new_projection_start == "beginning"
        self.max_batch = max_batch
        self.on_folded = on_folded
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._folded = FOLDED.labels("live")
        self._seconds = BATCH_SECONDS.labels("live")

    async def start(self) -> None:
        """Join the group and fold in the background."""
        consumer = make_consumer(self.kafka, group_id=self.group_id, client_id=self.client_id)
        listener = ResumeFromProjection(self.projector, lambda: self._consumer, from_beginning=self.from_beginning)
        consumer.subscribe([self.topic], listener=listener)
        # Known to the listener before start(): the first assignment may come while start() still runs.
        self._consumer = consumer
        await consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"fold-{self.topic}")

    async def stop(self) -> None:
        """Stop after the batch in hand is folded (or abandoned: it is refolded from the stored offsets)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        assert self._consumer is not None
        last_lag = 0.0
        while True:
            fetched = await self._consumer.getmany(timeout_ms=500, max_records=self.max_batch)
            if time.monotonic() - last_lag >= LAG_EVERY_S:
                last_lag = time.monotonic()
                await record_lag(self._consumer, self.group_id)
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
