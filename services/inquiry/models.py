"""inquiry's tables: the verifications it recorded (so redeliveries never call agencies twice) and their inputs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from shared.db import UtcDateTime


class Verification(SQLModel, table=True):
    """The events one RequestSubmitted or CorrectionSubmitted caused, recorded before they are published."""

    __tablename__ = "inquiry_verification"

    # The id of the event that caused the verification: a redelivery of that event finds this row.
    cause_event_id: str = Field(primary_key=True, max_length=64)
    tracking_code: str = Field(index=True, max_length=15)
    # InquiryCompleted events then the VerificationCompleted, as a JSON list in publish order.
    events: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class SubmissionInput(SQLModel, table=True):
    """What the inquiries of a request run on: the submission, with every correction merged in so far."""

    __tablename__ = "inquiry_submission_input"

    tracking_code: str = Field(primary_key=True, max_length=15)
    # The RequestSubmitted as JSON: personal data (national ID, birth date, mobile, email), kept only because
    # a correction re-runs the inquiries on the whole submission while carrying just what changed.
    submission: str = Field(sa_column=Column(Text, nullable=False))
    service_id: str
    catalog_version: int


class Published(SQLModel, table=True):
    """A verification whose events Kafka acknowledged: a redelivery of its cause publishes nothing again.

    A table of its own rather than a column, so databases made before it only gain a table.
    """

    __tablename__ = "inquiry_published"

    cause_event_id: str = Field(primary_key=True, max_length=64)
    published_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


TABLES = [Verification.__table__, SubmissionInput.__table__, Published.__table__]  # type: ignore[attr-defined]
