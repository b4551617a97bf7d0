"""inquiry's store: its tables (the verifications it recorded, so redeliveries never call agencies twice, their
inputs and publish marks) and every statement on them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Text, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import UtcDateTime
from shared.events import (
    AccessRecorded,
    InquiryCompleted,
    RequestSubmitted,
    ReviewRequested,
    VerificationCompleted,
    parse_access_event,
    parse_inbox_event,
    parse_request_event,
)
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]
# What one verification publishes: InquiryCompleted per inquiry, the VerificationCompleted, and when the next
# step is the agency's review, the AccessRecorded of that disclosure then the ReviewRequested for its inbox.
Outcome = InquiryCompleted | VerificationCompleted | AccessRecorded | ReviewRequested


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


async def create_tables(engine: AsyncEngine) -> None:
    """Create inquiry's own tables, and only those, when they are missing."""
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=TABLES))


def _dump(outcomes: list[Outcome]) -> str:
    return json.dumps([outcome.model_dump(mode="json") for outcome in outcomes], ensure_ascii=False)


def _load(text: str) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for payload in json.loads(text):
        parse = {"ReviewRequested": parse_inbox_event, "AccessRecorded": parse_access_event}.get(
            str(payload.get("event_type")), parse_request_event
        )
        outcome: object = parse(payload)
        if not isinstance(outcome, InquiryCompleted | VerificationCompleted | AccessRecorded | ReviewRequested):
            raise ValueError(f"a recorded verification holds a {type(outcome).__name__}")
        outcomes.append(outcome)
    return outcomes


# Core statements rather than ORM loads and flushes: every verification runs these, and the ORM's identity
# map and unit of work cost inquiry a fifth of its CPU in the benchmark for rows it reads or writes once.
async def recorded_outcomes(*, sessions: Sessions, cause_event_id: str) -> list[Outcome] | None:
    """The events recorded for this cause, in publish order; None when it was never verified."""
    found = await recorded_and_published(sessions=sessions, cause_event_id=cause_event_id)
    return None if found is None else found[0]


async def recorded_and_published(*, sessions: Sessions, cause_event_id: str) -> tuple[list[Outcome], bool] | None:
    """The recorded events of a cause and whether they were all published; None when never verified."""
    async with sessions() as session:
        row = (
            await session.exec(
                select(Verification.events, Published.cause_event_id)
                .outerjoin(Published, col(Published.cause_event_id) == col(Verification.cause_event_id))
                .where(Verification.cause_event_id == cause_event_id)
            )
        ).first()
    if row is None:
        return None
    events, published = row
    return _load(events), published is not None


def _insert_for(session: AsyncSession) -> Any:
    """The dialect's own INSERT, which has ON CONFLICT (SQLite and PostgreSQL spell it alike)."""
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(SubmissionInput)


class PublishMarks:
    """Marks verifications whose events Kafka acknowledged, many per transaction.

    A transaction per verification cost a fifth of inquiry's throughput in the benchmark. Marks wait here
    at most `interval_s`; a crash loses only those, and their redelivered causes publish the recorded events
    once more (same ids, which every consumer drops).
    """

    def __init__(
        self, sessions: Sessions, *, interval_s: float = 0.1, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.sessions = sessions
        self.interval_s = interval_s
        self.now = now
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, cause_event_id: str) -> None:
        """Mark this cause published at the next flush."""
        self._pending.add(cause_event_id)

    async def flush(self) -> None:
        """Write the pending marks in one transaction (marks already there, from a racing delivery, are kept)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, set()
        try:
            async with self.sessions() as session, session.begin():
                marked = select(Published.cause_event_id).where(col(Published.cause_event_id).in_(batch))
                existing = set((await session.exec(marked)).all())
                fresh = batch - existing
                if fresh:
                    stamp = self.now()
                    await session.exec(
                        insert(Published), params=[{"cause_event_id": cause, "published_at": stamp} for cause in fresh]
                    )
        except Exception:
            self._pending |= batch  # written next time (a failed mark only costs a duplicate on redelivery)
            raise

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except Exception as error:  # the database is briefly unavailable: keep the marks, try again
                log.warning("could not write publish marks yet: %s", error)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="inquiry-publish-marks")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self.flush()


async def load_submission_input(*, sessions: Sessions, tracking_code: str) -> RequestSubmitted | None:
    """The submission (with the corrections merged so far) the inquiries of this request run on."""
    async with sessions() as session:
        stored = (
            await session.exec(select(SubmissionInput.submission).where(SubmissionInput.tracking_code == tracking_code))
        ).first()
    if stored is None:
        return None
    submission = parse_request_event(json.loads(stored))
    if not isinstance(submission, RequestSubmitted):
        raise ValueError(f"the stored input of a request is a {submission.event_type}")
    return submission


async def record_verification(
    *,
    sessions: Sessions,
    submission: RequestSubmitted,
    outcomes: list[Outcome],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Outcome]:
    """Store the input and the outcomes of its cause (`submission.event_id`) in one transaction.

    Returns what is recorded for the cause: these outcomes, or those another delivery recorded first.
    """
    stored_input = {
        "submission": submission.model_dump_json(),
        "service_id": submission.service_id,
        "catalog_version": submission.catalog_version,
    }
    try:
        async with sessions() as session, session.begin():
            upsert = _insert_for(session).values(tracking_code=submission.tracking_code, **stored_input)
            await session.exec(
                upsert.on_conflict_do_update(index_elements=[SubmissionInput.tracking_code], set_=stored_input)
            )
            await session.exec(
                insert(Verification).values(
                    cause_event_id=submission.event_id,
                    tracking_code=submission.tracking_code,
                    events=_dump(outcomes),
                    created_at=now(),
                )
            )
    except IntegrityError:
        # Another delivery of the same cause (a consumer that lost its partition mid-handler) won: the first
        # recorded outcome is the one every delivery publishes.
        recorded = await recorded_outcomes(sessions=sessions, cause_event_id=submission.event_id)
        if recorded is None:
            raise
        return recorded
    return outcomes
