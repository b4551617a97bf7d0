"""notify's tables: its own copy of each request's contact details, and one row per notification."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Index, UniqueConstraint
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Field, SQLModel

from shared.db import UtcDateTime


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
