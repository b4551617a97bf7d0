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
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel import select as orm_select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.domain.working_days import WorkingCalendar
from shared.envelope import cloudevent_headers
from shared.events import NotificationOutcome, RequestEvent, StatusChanged
from shared.topics import Topic

from .domain import states_overtaken_by
from .folding import REQUEST_FIELDS, TIMELINE_FIELDS, ProjectedRequest, TermsOf, fold
from .models import ConsumedOffset, NotificationRecord, OutboxMessage, RequestRecord, TimelineEntry

SOURCE = "/khedmat/tracking"

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

# SQLite allows 32,766 bound parameters per statement: stay well below in IN (...) lists.
_IN_CHUNK = 500


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


@dataclass(frozen=True)
class ProjectionTables:
    """The three tables one projection lives in: the live ones, or a rebuild's staging copies."""

    requests: Table
    timeline: Table
    offsets: Table

    def all(self) -> list[Table]:
        return [self.requests, self.timeline, self.offsets]


LIVE_TABLES = ProjectionTables(
    RequestRecord.__table__,  # type: ignore[attr-defined]
    TimelineEntry.__table__,  # type: ignore[attr-defined]
    ConsumedOffset.__table__,  # type: ignore[attr-defined]
)
OUTBOX_TABLE: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
NOTIFICATION_TABLE: Table = NotificationRecord.__table__  # type: ignore[attr-defined]


@dataclass
class _Working:
    """The requests a batch touches, loaded once, folded in memory, written once."""

    records: dict[str, ProjectedRequest] = field(default_factory=dict)
    existing: set[str] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)
    seen: dict[str, set[str]] = field(default_factory=dict)
    next_seq: dict[str, int] = field(default_factory=dict)
    # Codes whose rows were read (or found absent): a carried working set reads each code once.
    loaded: set[str] = field(default_factory=set)


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[start : start + _IN_CHUNK] for start in range(0, len(items), _IN_CHUNK)]


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
    _carried: _Working | None = field(default=None, init=False, repr=False)

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

    async def _fold(self, session: AsyncConnection, batch: Sequence[Delivered]) -> tuple[list[StatusChanged], set[str]]:
        t = self.tables
        topics = sorted({item.position.topic for item in batch})
        # FOR UPDATE: two replicas folding one partition during a rebalance serialise here (PostgreSQL).
        rows = await session.execute(
            select(t.offsets.c.topic, t.offsets.c.partition, t.offsets.c.next_offset)
            .where(t.offsets.c.topic.in_(topics))
            .with_for_update()
        )
        stored: dict[tuple[str, int], int] = {(row[0], row[1]): row[2] for row in rows}
        fresh = [
            item
            for item in batch
            if item.position.offset >= stored.get((item.position.topic, item.position.partition), 0)
        ]
        if not fresh:
            return [], set()
        moved: dict[tuple[str, int], int] = {}
        for item in fresh:
            key = (item.position.topic, item.position.partition)
            moved[key] = max(moved.get(key, 0), item.position.offset + 1)

        folding = [item for item in fresh if item.event is not None and not item.void]
        codes = sorted({item.event.tracking_code for item in folding if item.event})
        # A rebuild is the only writer of its staging tables: what it folded stays in memory for later batches.
        working = await self._load(session, codes, self._carried or _Working())
        if self.carry_working:
            self._carried = working
        entries: list[dict[str, Any]] = []
        changes: list[tuple[StatusChanged, str]] = []
        for item in folding:
            event = item.event
            assert event is not None
            code = event.tracking_code
            seen = working.seen.setdefault(code, set())
            if event.event_id in seen:
                continue  # a duplicate publication: already on the timeline
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
            entries.append({name: getattr(folded.entry, name) for name in TIMELINE_FIELDS})
            if folded.record is not None:
                working.records[code] = folded.record
                working.dirty.add(code)
            if folded.change is not None:
                changes.append((folded.change, json.dumps(carrier)))

        await self._write(session, working, entries, changes)
        for (topic, partition), next_offset in moved.items():
            if (topic, partition) in stored:
                await session.execute(
                    update(t.offsets)
                    .where(t.offsets.c.topic == topic, t.offsets.c.partition == partition)
                    .values(next_offset=next_offset)
                )
            else:
                await session.execute(
                    insert(t.offsets).values(topic=topic, partition=partition, next_offset=next_offset)
                )
        touched = {entry["tracking_code"] for entry in entries}
        return ([change for change, _ in changes] if self.emit_status else []), touched

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

    async def _load(self, session: AsyncConnection, codes: list[str], working: _Working) -> _Working:
        t = self.tables
        codes = [code for code in codes if code not in working.loaded]
        working.loaded.update(codes)
        for chunk in _chunks(codes):
            for row in await session.execute(select(t.requests).where(t.requests.c.tracking_code.in_(chunk))):
                values = dict(row._mapping)
                working.records[values["tracking_code"]] = ProjectedRequest(**values)
                working.existing.add(values["tracking_code"])
            timeline = await session.execute(
                select(t.timeline.c.tracking_code, t.timeline.c.event_id, t.timeline.c.seq).where(
                    t.timeline.c.tracking_code.in_(chunk)
                )
            )
            for code, event_id, seq in timeline:
                working.seen.setdefault(code, set()).add(event_id)
                working.next_seq[code] = max(working.next_seq.get(code, 0), seq + 1)
        return working

    async def _write(
        self,
        session: AsyncConnection,
        working: _Working,
        entries: list[dict[str, Any]],
        changes: list[tuple[StatusChanged, str]],
    ) -> None:
        t = self.tables
        new = [_row(working.records[code]) for code in sorted(working.dirty - working.existing)]
        changed = [
            {**_row(working.records[code]), "key_code": code} for code in sorted(working.dirty & working.existing)
        ]
        if new:
            await session.execute(insert(t.requests), new)
        if changed:
            await session.execute(
                update(t.requests)
                .where(t.requests.c.tracking_code == bindparam("key_code"))
                .values({name: bindparam(name) for name in REQUEST_FIELDS if name != "tracking_code"}),
                changed,
            )
        if entries:
            await session.execute(insert(t.timeline), entries)
        if changes and self.emit_status:
            created_at = self.now()
            await session.execute(
                insert(OUTBOX_TABLE),
                [
                    {
                        "topic": Topic.STATUS.value,
                        "key": change.tracking_code,
                        "value": change.model_dump_json(),
                        "headers": json.dumps(cloudevent_headers(change, source=SOURCE)),
                        "trace_context": context,
                        "created_at": created_at,
                        "published_at": None,
                    }
                    for change, context in changes
                ],
            )


def _row(record: ProjectedRequest) -> dict[str, Any]:
    return {name: getattr(record, name) for name in REQUEST_FIELDS}


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
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(
            select(tables.offsets.c.partition, tables.offsets.c.next_offset).where(tables.offsets.c.topic == topic)
        )
        return {partition: next_offset for partition, next_offset in rows}


async def lookup(
    *, sessions: Sessions, tracking_code: str, national_id: str, lookup_key: bytes
) -> tuple[RequestRecord, list[TimelineEntry]] | None:
    """The request and its timeline, only when the national ID is the applicant's (else None, uniformly)."""
    async with sessions() as session:
        record = await session.get(RequestRecord, tracking_code)
        expected = national_id_digest(national_id, lookup_key)
        if record is None or not hmac.compare_digest(record.national_id_digest, expected):
            return None
        entries = await session.exec(
            orm_select(TimelineEntry).where(TimelineEntry.tracking_code == tracking_code).order_by(TimelineEntry.seq)  # type: ignore[arg-type]
        )
        return record, list(entries)


async def record_notification(*, sessions: Sessions, outcome: NotificationOutcome) -> bool:
    """Keep the outcome as its notification's state when it moves it forward; True when a row changed.

    Two statements that each decide atomically (no read-then-write, so neither replicas nor SQLite's single
    writer can interleave): insert the notification if it is new, else move it from a state the outcome
    overtakes. A redelivery, or a `sent` arriving after its receipt, changes nothing.
    """
    t = NOTIFICATION_TABLE
    async with sessions() as session, session.begin():
        connection = await session.connection()
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        inserted = await connection.execute(
            dialect.insert(t)
            .values(
                status_event_id=outcome.status_event_id,
                channel=outcome.channel,
                tracking_code=outcome.tracking_code,
                status=outcome.status.value,
                state=outcome.state,
                occurred_at=outcome.occurred_at,
            )
            .on_conflict_do_nothing(index_elements=[t.c.status_event_id, t.c.channel])
        )
        if inserted.rowcount == 1:
            return True
        moved = await connection.execute(
            update(t)
            .where(
                t.c.status_event_id == outcome.status_event_id,
                t.c.channel == outcome.channel,
                t.c.state.in_(states_overtaken_by(outcome.state)),
            )
            .values(state=outcome.state, occurred_at=outcome.occurred_at)
        )
        return bool(moved.rowcount)


async def notifications_of(*, sessions: Sessions, tracking_code: str) -> list[NotificationRecord]:
    """A request's notifications as last heard from notify (the caller has checked who is asking)."""
    async with sessions() as session:
        rows = await session.exec(
            orm_select(NotificationRecord).where(NotificationRecord.tracking_code == tracking_code)
        )
        return list(rows)
