"""notify's store: its tables (its own copy of each request's contact details, one row per notification) and
every statement on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Connection, DateTime, Index, UniqueConstraint, and_, inspect, or_, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import UtcDateTime

from .domain import FINAL_STATES, Channel, NotificationState, after_attempts, after_receipt, can_send

Sessions = async_sessionmaker[AsyncSession]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Contact(SQLModel, table=True):
    """How to reach the applicant of one request; copied from RequestSubmitted (desk.status carries none)."""

    __tablename__ = "notify_contact"

    tracking_code: str = Field(primary_key=True, max_length=15)
    mobile: str = Field(max_length=11)
    email: str | None = Field(default=None, max_length=254)
    language: str = Field(default="fa", max_length=2)
    service_id: str = Field(max_length=100)
    # The channels the citizen asked to be told on ("sms,email"); empty: every channel they gave details for.
    channels: str = Field(default="", max_length=32)
    # The applicant's subject digest on desk.access (HMAC of the national ID under KHEDMAT_AUDIT_SUBJECT_KEY),
    # so a read of this request's notifications is recorded under the right citizen; notify keeps no national ID.
    audit_subject: str | None = Field(default=None, max_length=64)


class Notification(SQLModel, table=True):
    """One status change told on one channel; the unique (event, channel) pair is the durable dedupe."""

    __tablename__ = "notify_notification"
    __table_args__ = (
        UniqueConstraint("status_event_id", "channel", name="uq_notify_notification_event_channel"),
        # The sweeper's work list: rows still `created`, oldest first.
        Index("ix_notify_notification_state_created", "state", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    status_event_id: str = Field(max_length=64)
    channel: str = Field(max_length=8)
    tracking_code: str = Field(index=True, max_length=15)
    status: str = Field(max_length=32)
    state: str = Field(default="created", max_length=16)
    attempts: int = Field(default=0, ge=0)
    provider_message_id: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    # Set with each new outcome (sent, delivered, failed), cleared once it is on desk.notifications: the outcome
    # relay's indexed work list.
    outcome_due: bool = Field(default=False, index=True)
    # When the gateway's receipt said the phone got it.
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    # Held for the quiet hours (or after a failed sweep): not sent before this moment; the sweeper sends it.
    not_before: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    # What is sent, rendered once when the row is recorded, so the sweeper can send it without its event.
    subject: str | None = Field(default=None, max_length=300)
    body: str | None = None
    # Whoever sends takes this lease first (a conditional update): the consumer, a redelivery on another
    # replica and the sweeper never send one row at once, and a crashed sender's lease simply runs out.
    lease_until: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


async def create_tables(conn: AsyncConnection) -> None:
    """Create notify's tables (only these: other services' models may share SQLModel.metadata in tests)."""
    await conn.run_sync(
        lambda sync_conn: SQLModel.metadata.create_all(
            sync_conn,
            tables=[Contact.__table__, Notification.__table__],  # type: ignore[attr-defined]
        )
    )
    await conn.run_sync(_add_audit_subject)


def _add_audit_subject(sync_conn: Connection) -> None:
    # notify has no migrations yet: a contact table made before the column existed gets it (nullable: those
    # requests' notifications cannot be attributed, so reading them is refused, see internal_api.py).
    if "audit_subject" not in {column["name"] for column in inspect(sync_conn).get_columns("notify_contact")}:
        sync_conn.execute(text("ALTER TABLE notify_contact ADD COLUMN audit_subject VARCHAR(64)"))


async def find_contact(sessions: Sessions, tracking_code: str) -> Contact | None:
    """The contact details of a request, or None when its RequestSubmitted has not come yet."""
    async with sessions() as session:
        return await session.get(Contact, tracking_code)


async def save_contact(
    sessions: Sessions,
    *,
    tracking_code: str,
    mobile: str,
    email: str | None,
    language: str,
    channels: str,
    service_id: str,
    audit_subject: str | None = None,
) -> None:
    """Upsert a request's contact details (a replayed submission changes nothing)."""
    async with sessions() as session:
        contact = await session.get(Contact, tracking_code)
        if contact is None:
            contact = Contact(tracking_code=tracking_code, mobile=mobile, service_id=service_id)
        contact.mobile = mobile
        contact.email = email
        contact.language = language
        contact.channels = channels
        contact.service_id = service_id
        contact.audit_subject = audit_subject
        session.add(contact)
        try:
            await session.commit()
        except IntegrityError:
            # Another consumer (a rebalance overlap) inserted the same contact first: same data, done.
            await session.rollback()


async def claim_notification(
    sessions: Sessions,
    *,
    status_event_id: str,
    channel: Channel,
    tracking_code: str,
    status: str,
    not_before: datetime | None,
    subject: str | None,
    body: str,
) -> Notification:
    """The row for (event, channel), created and committed before anything is sent (persist, then send)."""
    query = select(Notification).where(
        col(Notification.status_event_id) == status_event_id, col(Notification.channel) == channel.value
    )
    async with sessions() as session:
        existing = (await session.exec(query)).first()
        if existing is not None:
            return existing
        notification = Notification(
            status_event_id=status_event_id,
            channel=channel.value,
            tracking_code=tracking_code,
            status=status,
            state=NotificationState.CREATED.value,
            not_before=not_before,
            subject=subject,
            body=body,
        )
        session.add(notification)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return (await session.exec(query)).one()
        return notification


async def take_lease(sessions: Sessions, notification_id: int, *, moment: datetime, lease_s: float) -> bool:
    """Take the row's send lease if it is still `created` and nobody holds a live lease: one sender wins."""
    async with sessions() as session:
        result = await session.exec(
            update(Notification)
            .where(
                col(Notification.id) == notification_id,
                col(Notification.state) == NotificationState.CREATED.value,
                or_(col(Notification.lease_until).is_(None), col(Notification.lease_until) <= moment),
            )
            .values(lease_until=moment + timedelta(seconds=lease_s))
        )
        await session.commit()
        return bool(result.rowcount)


async def count_attempt(sessions: Sessions, notification_id: int) -> None:
    """Record an attempt before making it, so a crash mid-send still spends budget (one UPDATE, no read)."""
    async with sessions() as session:
        await session.exec(
            update(Notification)
            .where(col(Notification.id) == notification_id)
            .values(attempts=col(Notification.attempts) + 1)
        )
        await session.commit()


async def release_lease(sessions: Sessions, notification_id: int, *, hold_until: datetime | None = None) -> None:
    """Give a row's lease back (still `created`); with `hold_until`, the sweeper leaves it until then."""
    values: dict[str, object] = {"lease_until": None}
    if hold_until is not None:
        values["not_before"] = hold_until
    async with sessions() as session:
        await session.exec(update(Notification).where(col(Notification.id) == notification_id).values(**values))
        await session.commit()


@dataclass(frozen=True)
class RoundEnd:
    """How a round of attempts left its row: the new state, and whose notification it was (for logs, metrics)."""

    state: NotificationState
    channel: str
    tracking_code: str


async def record_round(
    sessions: Sessions,
    notification_id: int,
    *,
    budget: int,
    delivered: bool,
    retryable: bool = False,
    provider_id: str | None = None,
    error: str | None = None,
) -> RoundEnd:
    """Record how a round of attempts ended and give the lease back.

    The write is conditional on the state read (compare and set): a delivery receipt can land between the
    read and the write (the gateway posts it as soon as it accepts), and a plain read-modify-write would put
    the row back to `sent` over the receipt's `delivered`.
    """
    while True:
        async with sessions() as session:
            row = await session.get(Notification, notification_id)
            if row is None:
                raise LookupError(f"notification {notification_id} vanished")
            channel, tracking_code, seen = row.channel, row.tracking_code, row.state
            values: dict[str, object] = {"lease_until": None}
            if delivered:
                values["sent_at"] = _utcnow()
                values["provider_message_id"] = row.provider_message_id or provider_id
            if can_send(seen):
                state = after_attempts(
                    seen, delivered=delivered, retryable=retryable, attempts=row.attempts, budget=budget
                )
                values.update(state=state.value, error=error[:500] if error else None)
                if state in FINAL_STATES:
                    values["outcome_due"] = True
            else:
                # A delivery receipt overtook the send's own record: its outcome stands, the send is recorded.
                state = NotificationState(seen)
            result = await session.exec(
                update(Notification)
                .where(col(Notification.id) == notification_id, col(Notification.state) == seen)
                .values(**values)
            )
            await session.commit()
        if result.rowcount:
            return RoundEnd(state=state, channel=channel, tracking_code=tracking_code)


async def error_of(sessions: Sessions, notification_id: int) -> str:
    """Why a notification failed, as recorded on its row."""
    async with sessions() as session:
        row = await session.get(Notification, notification_id)
    return (row.error if row is not None else None) or "failed"


async def due_for_sweep(
    sessions: Sessions, *, moment: datetime, stale_before: datetime, batch: int
) -> list[Notification]:
    """Rows still `created` with no live lease, either held until now or left before `stale_before`, oldest first."""
    query = (
        select(Notification)
        .where(
            col(Notification.state) == NotificationState.CREATED.value,
            or_(col(Notification.lease_until).is_(None), col(Notification.lease_until) <= moment),
            or_(
                col(Notification.not_before) <= moment,
                and_(col(Notification.not_before).is_(None), col(Notification.created_at) <= stale_before),
            ),
        )
        .order_by(col(Notification.created_at), col(Notification.id))
        .limit(batch)
    )
    async with sessions() as session:
        return list((await session.exec(query)).all())


@dataclass(frozen=True)
class ReceiptApplied:
    """A delivery receipt that moved its notification: which channel, and to which state."""

    channel: str
    state: NotificationState


async def record_receipt(
    sessions: Sessions, *, notification_id: int, message_id: str, receipt_status: str
) -> ReceiptApplied | None:
    """Apply a gateway's delivery receipt to its SMS row; None when it changes nothing (unknown row, another
    message id, or a receipt the row's state ignores). Compare and set, as in `record_round`."""
    while True:
        async with sessions() as session:
            row = await session.get(Notification, notification_id)
            if row is None or row.channel != Channel.SMS.value:
                return None
            if row.provider_message_id is not None and row.provider_message_id != message_id:
                return None
            new_state = after_receipt(row.state, receipt_status)
            if new_state is None:
                return None
            values: dict[str, object] = {"state": new_state.value, "outcome_due": True}
            if new_state is NotificationState.DELIVERED:
                values["provider_message_id"] = row.provider_message_id or message_id
                values["delivered_at"] = _utcnow()
            else:
                values["error"] = f"delivery receipt: {receipt_status}"[:500]
            result = await session.exec(
                update(Notification)
                .where(col(Notification.id) == row.id, col(Notification.state) == row.state)
                .values(**values)
            )
            await session.commit()
        if result.rowcount:
            return ReceiptApplied(channel=row.channel, state=new_state)


async def outcomes_due(sessions: Sessions, *, batch: int) -> list[Notification]:
    """Rows whose newest outcome is not yet on desk.notifications, in id order."""
    query = (
        select(Notification).where(col(Notification.outcome_due).is_(True)).order_by(col(Notification.id)).limit(batch)
    )
    async with sessions() as session:
        return list((await session.exec(query)).all())


async def mark_outcome_published(sessions: Sessions, *, notification_id: int, state: str) -> None:
    """Mark a row's outcome published, only if the state did not move meanwhile (a receipt): the newer state is
    published next round."""
    async with sessions() as session:
        await session.exec(
            update(Notification)
            .where(col(Notification.id) == notification_id, col(Notification.state) == state)
            .values(outcome_due=False)
        )
        await session.commit()


async def notifications_of(sessions: Sessions, tracking_code: str) -> list[Notification] | None:
    """A request's notifications, oldest first; None when notify knows nothing of the request."""
    query = (
        select(Notification)
        .where(col(Notification.tracking_code) == tracking_code)
        .order_by(col(Notification.created_at), col(Notification.id))
    )
    async with sessions() as session:
        rows = list((await session.exec(query)).all())
        if not rows and await session.get(Contact, tracking_code) is None:
            return None
    return rows
