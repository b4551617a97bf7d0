"""tracking's use cases: fold batches of events into the projection (exactly once in effect), look a request up.

A batch is one transaction: the rows it produced, the offsets it consumed and (live only) its StatusChanged
outbox rows commit together. The live fold and the rebuild run the same code on different tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Tracer
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.working_days import WorkingCalendar
from shared.envelope import cloudevent_headers
from shared.events import NotificationOutcome, RequestEvent, StatusChanged
from shared.topics import Topic

from . import store
from .domain import states_overtaken_by
from .domain_folding import TIMELINE_FIELDS, fold
from .domain_terms import TermsOf
from .store import LIVE_TABLES, NotificationRecord, ProjectionTables, RequestRecord, TimelineEntry
from .store import Sessions as Sessions  # the use cases' callers name it here
from .store_projection import OutboxRow, Working, load_requests, lock_offsets, move_offsets, write_batch

SOURCE = "/khedmat/tracking"

log = logging.getLogger(__name__)


def national_id_digest(national_id: str, key: bytes) -> str:
    """The keyed digest stored instead of the national ID."""
    return hmac.new(key, national_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Position:
    """Where an event was read from."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Delivered:
    """One record of the topic: its position, its event (None for a type this build does not know), void or not.

    A `void` event (a submission or command Kafka appended after intake answered 503) only moves the offset.
    """

    position: Position
    event: RequestEvent | None
    void: bool = False
    # The record's headers (traceparent...): the fold of this event continues the producer's trace.
    headers: Mapping[str, str] | None = None


@dataclass
class _Folding:
    """What folding a batch's events produced: its timeline rows and its status changes (with their trace)."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    changes: list[tuple[StatusChanged, str]] = field(default_factory=list)


def _fresh(batch: Sequence[Delivered], stored: dict[tuple[str, int], int]) -> list[Delivered]:
    """The records at or past their partition's stored offset (the others were folded already)."""
    return [
        item for item in batch if item.position.offset >= stored.get((item.position.topic, item.position.partition), 0)
    ]


def _moved(fresh: Sequence[Delivered]) -> dict[tuple[str, int], int]:
    """The next offset of each partition once `fresh` is folded."""
    moved: dict[tuple[str, int], int] = {}
    for item in fresh:
        key = (item.position.topic, item.position.partition)
        moved[key] = max(moved.get(key, 0), item.position.offset + 1)
    return moved


def _outbox_rows(changes: list[tuple[StatusChanged, str]]) -> list[OutboxRow]:
    return [
        OutboxRow(
            topic=Topic.STATUS.value,
            key=change.tracking_code,
            value=change.model_dump_json(),
            headers=json.dumps(cloudevent_headers(change, source=SOURCE)),
            trace_context=context,
        )
        for change, context in changes
    ]


@dataclass
class Projector:
    """Folds batches of delivered events into one projection's tables.

    `emit_status` is False for a rebuild: it replays history, and history must not text anyone again.
    """

    sessions: Sessions
    lookup_key: bytes
    terms_of: TermsOf
    calendar: WorkingCalendar
    tables: ProjectionTables = LIVE_TABLES
    emit_status: bool = True
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    # With a tracer, each event's fold is a CONSUMER span in its request's own trace (the live fold); the
    # rebuild replays history without one.
    tracer: Tracer | None = None
    # The consumer group the live fold reads as, named on its spans (messaging.consumer.group.name).
    consumer_group: str | None = None
    # Told which requests a committed batch changed (cache invalidation, live streams); live fold only.
    on_committed: Callable[[set[str]], Awaitable[None]] | None = None
    # Keep the folded requests in memory across batches (a rebuild: nobody else writes its tables).
    carry_working: bool = False
    _carried: Working | None = field(default=None, init=False, repr=False)

    def digest(self, national_id: str) -> str:
        return national_id_digest(national_id, self.lookup_key)

    async def fold_batch(self, batch: Sequence[Delivered]) -> list[StatusChanged]:
        """Fold the batch in one transaction; records at or past a stored offset only. Returns the changes."""
        if not batch:
            return []
        try:
            async with self.sessions() as session, session.begin():
                changes, touched = await self._fold(await session.connection(), batch)
        except BaseException:
            self._carried = None  # rows were changed in place for a transaction that did not commit
            raise
        if self._carried is not None:
            self._carried.existing |= self._carried.dirty
            self._carried.dirty = set()
        if touched and self.on_committed is not None:
            try:
                await self.on_committed(touched)
            except Exception as error:  # the projection is committed; a cache's TTL covers a missed notice
                log.warning("after-commit notice failed: %s", type(error).__name__)
        return changes

    async def _fold(
        self, connection: AsyncConnection, batch: Sequence[Delivered]
    ) -> tuple[list[StatusChanged], set[str]]:
        topics = sorted({item.position.topic for item in batch})
        stored = await lock_offsets(connection, self.tables, topics)
        fresh = _fresh(batch, stored)
        if not fresh:
            return [], set()
        folding = [item for item in fresh if item.event is not None and not item.void]
        codes = sorted({item.event.tracking_code for item in folding if item.event})
        # A rebuild is the only writer of its staging tables: what it folded stays in memory for later batches.
        working = await load_requests(connection, self.tables, codes, self._carried or Working())
        if self.carry_working:
            self._carried = working
        done = _Folding()
        for item in folding:
            self._fold_one(item, working, done)
        outbox = _outbox_rows(done.changes) if self.emit_status else []
        created_at = self.now() if outbox else None
        await write_batch(connection, self.tables, working, done.entries, outbox, created_at)
        await move_offsets(connection, self.tables, _moved(fresh), stored)
        touched = {entry["tracking_code"] for entry in done.entries}
        return ([change for change, _ in done.changes] if self.emit_status else []), touched

    def _fold_one(self, item: Delivered, working: Working, done: _Folding) -> None:
        """Fold one event into the working set, unless its id is on the request's timeline already."""
        event = item.event
        assert event is not None
        code = event.tracking_code
        seen = working.seen.setdefault(code, set())
        if event.event_id in seen:
            return  # a duplicate publication: already on the timeline
        seen.add(event.event_id)
        seq = working.next_seq.get(code, 0)
        working.next_seq[code] = seq + 1
        with self._span(item):
            folded = fold(
                working.records.get(code),
                event,
                seq=seq,
                digest=self.digest,
                terms_of=self.terms_of,
                calendar=self.calendar,
                want_change=self.emit_status,
            )
            carrier: dict[str, str] = {}
            if folded.change is not None:
                propagate.inject(carrier)  # the relay's publish of the change continues this event's trace
        done.entries.append({name: getattr(folded.entry, name) for name in TIMELINE_FIELDS})
        if folded.record is not None:
            working.records[code] = folded.record
            working.dirty.add(code)
        if folded.change is not None:
            done.changes.append((folded.change, json.dumps(carrier)))

    @contextlib.contextmanager
    def _span(self, item: Delivered) -> Iterator[None]:
        if self.tracer is None or item.headers is None:
            yield
            return
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": item.position.topic,
            "messaging.destination.partition.id": str(item.position.partition),
            "messaging.kafka.message.offset": item.position.offset,
        }
        if self.consumer_group is not None:
            attributes["messaging.consumer.group.name"] = self.consumer_group
        if item.event is not None:
            # The key is the tracking code: an identifier, not personal data.
            attributes["messaging.kafka.message.key"] = item.event.tracking_code
            attributes["messaging.message.id"] = item.event.event_id
        with self.tracer.start_as_current_span(
            f"{item.position.topic} process",
            context=propagate.extract(item.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ):
            yield


async def fold_event(
    *,
    sessions: Sessions,
    event: RequestEvent,
    position: Position,
    lookup_key: bytes,
    terms_of: TermsOf,
    calendar: WorkingCalendar,
    void: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> StatusChanged | None:
    """Fold one event as a batch of one (tests and tools); returns its StatusChanged, if any."""
    projector = Projector(sessions, lookup_key, terms_of, calendar, now=now)
    changes = await projector.fold_batch([Delivered(position, event, void)])
    return changes[0] if changes else None


async def stored_offsets(*, sessions: Sessions, topic: str, tables: ProjectionTables = LIVE_TABLES) -> dict[int, int]:
    """The next offset to fold per partition of `topic`, as committed with the projection."""
    return await store.stored_offsets(sessions=sessions, topic=topic, tables=tables)


async def lookup(
    *, sessions: Sessions, tracking_code: str, national_id: str, lookup_key: bytes
) -> tuple[RequestRecord, list[TimelineEntry]] | None:
    """The request and its timeline, only when the national ID is the applicant's (else None, uniformly)."""
    return await store.request_and_timeline(
        sessions=sessions, tracking_code=tracking_code, national_id_digest=national_id_digest(national_id, lookup_key)
    )


async def request_facts(*, sessions: Sessions, tracking_code: str) -> RequestRecord | None:
    """A request by its code alone, for the other services' checks (the caller has checked the service key)."""
    return await store.request_of(sessions=sessions, tracking_code=tracking_code)


async def record_notification(*, sessions: Sessions, outcome: NotificationOutcome) -> bool:
    """Keep the outcome as its notification's state when it moves it forward; True when a row changed.

    Neither replicas nor SQLite's single writer can interleave (the store decides atomically): a redelivery, or
    a `sent` arriving after its receipt, changes nothing.
    """
    return await store.save_notification_outcome(
        sessions=sessions, outcome=outcome, overtaken=states_overtaken_by(outcome.state)
    )


async def notifications_of(*, sessions: Sessions, tracking_code: str) -> list[NotificationRecord]:
    """A request's notifications as last heard from notify (the caller has checked who is asking)."""
    return await store.notifications_of(sessions=sessions, tracking_code=tracking_code)
