"""tracking's tables (the status projection, its consumed offsets, the outbox) and its API shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.db import UtcDateTime


def _utc_column(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UtcDateTime(), nullable=nullable)


class RequestRecord(SQLModel, table=True):
    """One request's current state: the row a lookup reads."""

    __tablename__ = "request_status"

    tracking_code: str = Field(primary_key=True, max_length=15)
    national_id_digest: str = Field(max_length=64)
    service_id: str
    catalog_version: int
    agency: str
    status: str = Field(index=True)
    sla_breached: bool = False
    complaint_open: bool = False
    waiting_for_fa: str | None = None
    waiting_for_en: str | None = None
    submitted_at: datetime = Field(sa_column=_utc_column())
    updated_at: datetime = Field(sa_column=_utc_column())


class TimelineEntry(SQLModel, table=True):
    """Every event of a request, applied or refused, in the order tracking folded it."""

    __tablename__ = "timeline_entry"
    __table_args__ = (UniqueConstraint("tracking_code", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tracking_code: str = Field(index=True, max_length=15)
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


TABLES = [RequestRecord.__table__, TimelineEntry.__table__, ConsumedOffset.__table__, OutboxMessage.__table__]  # type: ignore[attr-defined]


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
    timeline: list[TimelineOut]
