"""notify's tables: its own copy of each request's contact details, and one row per notification."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, UniqueConstraint
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


class Notification(SQLModel, table=True):
    """One status change told on one channel; the unique (event, channel) pair is the durable dedupe."""

    __tablename__ = "notify_notification"
    __table_args__ = (UniqueConstraint("status_event_id", "channel", name="uq_notify_notification_event_channel"),)

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
    # The last state published on desk.notifications (the outcome relay publishes each final state once).
    outcome_published: str | None = Field(default=None, max_length=16)
    # When the gateway's receipt said the phone got it.
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    # Held for the quiet hours: not sent before this moment (the sweeper releases it), with its text kept.
    not_before: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    body: str | None = None


async def create_tables(conn: AsyncConnection) -> None:
    """Create notify's tables (only these: other services' models may share SQLModel.metadata in tests)."""
    await conn.run_sync(
        lambda sync_conn: SQLModel.metadata.create_all(
            sync_conn,
            tables=[Contact.__table__, Notification.__table__],  # type: ignore[attr-defined]
        )
    )
