"""tracking's store: its tables (the status projection, its consumed offsets, the outbox, the notifications'
outcomes) and the SQL that reads and writes them, but for the fold's (store_projection.py) and the rebuild's
(store_rebuild.py)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Column, Table, UniqueConstraint, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel
from sqlmodel import select as orm_select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import UtcDateTime
from shared.events import NotificationOutcome

Sessions = async_sessionmaker[AsyncSession]


def _utc_column(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UtcDateTime(), nullable=nullable)


class RequestRecord(SQLModel, table=True):
    """One request's current state: the row a lookup reads."""

    __tablename__ = "request_status"

    tracking_code: str = Field(primary_key=True, max_length=15)
    national_id_digest: str = Field(max_length=64, index=True)
    service_id: str
    catalog_version: int
    agency: str
    status: str
    sla_breached: bool = False
    complaint_open: bool = False
    waiting_for_fa: str | None = None
    waiting_for_en: str | None = None
    # Since when the request waits for what `waiting_for` says (an inquiry, the citizen, the agency).
    waiting_since: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    # Inquiries still outstanding, as `inquiry@agency` joined by spaces (the catalog names them).
    pending_inquiries: str = ""
    # The SLA: working days from the service's catalog version; the clock stops while the request waits on
    # the citizen (`paused_since`), and each finished pause moves the due date by the working days it took.
    duration_working_days: int | None = None
    due_on: date | None = Field(default=None, index=True)
    paused_since: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    paused_working_days: int = 0
    # Every document of the request (submission and corrections), as JSON DocumentRefs.
    documents: str = "[]"
    decision: str | None = None
    decision_reason_fa: str | None = None
    decision_reason_en: str | None = None
    legal_basis: str | None = None
    decided_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    # The delivered result (a document or a link, with its summary), as JSON.
    result: str | None = None
    delivered_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    open_complaint_id: str | None = None
    complaint_filed_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    submitted_at: datetime = Field(sa_column=_utc_column())
    updated_at: datetime = Field(sa_column=_utc_column())


class TimelineEntry(SQLModel, table=True):
    """Every event of a request, applied or refused, numbered in the order of the request's partition.

    `seq` is the event's place in its request's own history, which is the same in every run (one request lives
    on one partition), so a rebuilt projection is comparable row by row with the live one.
    """

    __tablename__ = "timeline_entry"
    __table_args__ = (UniqueConstraint("tracking_code", "event_id"),)

    tracking_code: str = Field(primary_key=True, max_length=15)
    seq: int = Field(primary_key=True)
    event_id: str
    event_type: str
    occurred_at: datetime = Field(sa_column=_utc_column())
    applied: bool
    status_after: str | None = None
    detail_fa: str | None = None
    detail_en: str | None = None


class ConsumedOffset(SQLModel, table=True):
    """The next offset to fold per partition, written in the same transaction as the rows it produced."""

    __tablename__ = "consumed_offset"

    topic: str = Field(primary_key=True)
    partition: int = Field(primary_key=True)
    next_offset: int


class OutboxMessage(SQLModel, table=True):
    """A StatusChanged committed with the projection and published afterwards by the relay (at least once)."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    topic: str
    key: str
    value: str
    headers: str
    trace_context: str
    created_at: datetime = Field(sa_column=_utc_column())
    published_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class NotificationRecord(SQLModel, table=True):
    """The latest outcome of telling the applicant about one status change on one channel (desk.notifications).

    Not part of the projection of desk.requests: a rebuild leaves it alone. No contact details, only the channel.
    """

    __tablename__ = "request_notification"

    status_event_id: str = Field(primary_key=True, max_length=64)
    channel: str = Field(primary_key=True, max_length=8)
    tracking_code: str = Field(max_length=15, index=True)
    # The status the change moved the request to (what the citizen was told about).
    status: str = Field(max_length=32)
    # sent, delivered or failed; only ever moves forward (domain.notification_outcome_wins).
    state: str = Field(max_length=16)
    # When notify published the outcome now stored.
    occurred_at: datetime = Field(sa_column=_utc_column())


TABLES = [
    RequestRecord.__table__,  # type: ignore[attr-defined]
    TimelineEntry.__table__,  # type: ignore[attr-defined]
    ConsumedOffset.__table__,  # type: ignore[attr-defined]
    OutboxMessage.__table__,  # type: ignore[attr-defined]
    NotificationRecord.__table__,  # type: ignore[attr-defined]
]


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


# --- the projection, as lookups read it ---------------------------------------------------------------


async def stored_offsets(*, sessions: Sessions, topic: str, tables: ProjectionTables = LIVE_TABLES) -> dict[int, int]:
    """The next offset to fold per partition of `topic`, as committed with the projection."""
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(
            select(tables.offsets.c.partition, tables.offsets.c.next_offset).where(tables.offsets.c.topic == topic)
        )
        return {partition: next_offset for partition, next_offset in rows}


async def request_of(*, sessions: Sessions, tracking_code: str) -> RequestRecord | None:
    """The request's row by its code alone (None: the projection holds no such request)."""
    async with sessions() as session:
        return await session.get(RequestRecord, tracking_code)


async def request_and_timeline(
    *, sessions: Sessions, tracking_code: str, national_id_digest: str
) -> tuple[RequestRecord, list[TimelineEntry]] | None:
    """The request and its timeline, only when the digest is its applicant's (else None, uniformly)."""
    async with sessions() as session:
        record = await session.get(RequestRecord, tracking_code)
        if record is None or not hmac.compare_digest(record.national_id_digest, national_id_digest):
            return None
        entries = await session.exec(
            orm_select(TimelineEntry).where(TimelineEntry.tracking_code == tracking_code).order_by(TimelineEntry.seq)  # type: ignore[arg-type]
        )
        return record, list(entries)


async def requests_of(*, sessions: Sessions, subject: str, limit: int) -> list[RequestRecord]:
    """The requests of the applicant with this national ID digest, newest first."""
    async with sessions() as session:
        rows = await session.exec(
            orm_select(RequestRecord)
            .where(RequestRecord.national_id_digest == subject)
            .order_by(RequestRecord.submitted_at.desc())  # type: ignore[attr-defined]
            .limit(limit)
        )
        return list(rows)


async def overdue_requests(
    *, sessions: Sessions, today: date, open_states: list[str], limit: int
) -> list[tuple[str, date, int]]:
    """Requests in `open_states`, not yet breached, due before `today`: (code, due date, working days allowed)."""
    requests = LIVE_TABLES.requests
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(
            select(requests.c.tracking_code, requests.c.due_on, requests.c.duration_working_days)
            .where(
                requests.c.due_on < today,
                requests.c.sla_breached.is_(False),
                requests.c.status.in_(open_states),
            )
            .order_by(requests.c.due_on)
            .limit(limit)
        )
        return [(code, due_on, duration) for code, due_on, duration in rows]


async def count_by_status(*, sessions: Sessions) -> dict[str, int]:
    """How many requests the projection holds per status (statuses it holds none of are absent)."""
    requests = LIVE_TABLES.requests
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(select(requests.c.status, func.count()).group_by(requests.c.status))
        return {str(status): int(n) for status, n in rows.all()}


# --- notifications' outcomes ----------------------------------------------------------------------------


async def save_notification_outcome(*, sessions: Sessions, outcome: NotificationOutcome, overtaken: list[str]) -> bool:
    """Insert the notification if it is new, else move it from one of the `overtaken` states; True when a row changed.

    Two statements that each decide atomically (no read-then-write, so neither replicas nor SQLite's single
    writer can interleave).
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
                t.c.state.in_(overtaken),
            )
            .values(state=outcome.state, occurred_at=outcome.occurred_at)
        )
        return bool(moved.rowcount)


async def notifications_of(*, sessions: Sessions, tracking_code: str) -> list[NotificationRecord]:
    """A request's notifications as last heard from notify."""
    async with sessions() as session:
        rows = await session.exec(
            orm_select(NotificationRecord).where(NotificationRecord.tracking_code == tracking_code)
        )
        return list(rows)


# --- the outbox -------------------------------------------------------------------------------------------


async def pending_outbox(*, sessions: Sessions, limit: int) -> list[OutboxMessage]:
    """Up to `limit` unpublished outbox rows, in commit order."""
    async with sessions() as session:
        return list(
            await session.exec(
                orm_select(OutboxMessage)
                .where(OutboxMessage.published_at.is_(None))  # type: ignore[union-attr]
                .order_by(OutboxMessage.id)  # type: ignore[arg-type]
                .limit(limit)
            )
        )


async def mark_published(*, sessions: Sessions, message_id: int | None) -> None:
    """Stamp an outbox row published now."""
    async with sessions() as session, session.begin():
        await session.exec(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)  # type: ignore[arg-type]
            .values(published_at=datetime.now(UTC))
        )
