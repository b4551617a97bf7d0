"""tracking's tables (the status projection, its consumed offsets, the outbox, the notifications' outcomes) and
its API shapes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.db import UtcDateTime

NotificationChannel = Literal["sms", "email"]
NotificationState = Literal["sent", "delivered", "failed"]


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


class LookupIn(BaseModel):
    """A status lookup: the tracking code together with the applicant's national ID, never the code alone."""

    tracking_code: str = PydanticField(min_length=1, max_length=40, examples=["13160-00012-42902"])
    national_id: str = PydanticField(min_length=1, max_length=20, examples=["0012345679"])


class TimelineOut(BaseModel):
    """One line of the timeline."""

    event_type: str
    occurred_at: datetime
    # The same moment on Tehran's wall clock in the Jalali calendar, as a citizen reads it: 1405/09/07 16:30.
    occurred_at_jalali: str = PydanticField(examples=["1405/09/07 16:30"])
    applied: bool
    status_after: str | None
    detail_fa: str | None
    detail_en: str | None


class NotificationOut(BaseModel):
    """How telling the applicant about one status change on one channel went, as far as tracking knows."""

    # Which status change it told about: its StatusChanged id, the status it moved to and when it happened.
    status_event_id: str
    status: str
    status_changed_at: datetime | None
    channel: NotificationChannel
    state: NotificationState
    occurred_at: datetime
    occurred_at_jalali: str = PydanticField(examples=["1405/09/07 16:31"])
    detail_fa: str
    detail_en: str


class DocumentOut(BaseModel):
    """A document of the request, by the hash of its content."""

    kind: str
    sha256: str
    media_type: str
    size_bytes: int


class DecisionOut(BaseModel):
    """The decision, its reasons and the law it rests on."""

    decision: str
    reason_fa: str | None
    reason_en: str | None
    legal_basis: str | None
    decided_at: datetime


class ResultOut(BaseModel):
    """What the agency delivered: a stored document or a link, with a summary."""

    document: DocumentOut | None
    url: str | None
    summary_fa: str
    summary_en: str
    delivered_at: datetime


class ComplaintOut(BaseModel):
    """The complaint waiting for the agency's answer."""

    complaint_id: str
    filed_at: datetime


class StatusOut(BaseModel):
    """What a citizen sees of a request."""

    tracking_code: str
    service_id: str
    catalog_version: int
    status: str
    sla_breached: bool
    complaint_open: bool
    waiting_for_fa: str | None
    waiting_for_en: str | None
    submitted_at: datetime
    submitted_at_jalali: str = PydanticField(examples=["1405/09/07 16:30"])
    updated_at: datetime
    updated_at_jalali: str = PydanticField(examples=["1405/09/07 16:31"])
    waiting_since: datetime | None
    # The SLA: due by the end of this day (Tehran), in working days; null while the clock waits on the citizen.
    duration_working_days: int | None
    due_on: date | None
    due_on_jalali: str | None = PydanticField(examples=["1405/09/17"])
    overdue: bool
    documents: list[DocumentOut]
    decision: DecisionOut | None
    result: ResultOut | None
    open_complaint: ComplaintOut | None
    timeline: list[TimelineOut]
    # The SMS and emails about the request's status changes, in the order of the changes.
    notifications: list[NotificationOut] = []
