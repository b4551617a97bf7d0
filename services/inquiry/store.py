"""inquiry's store and the use cases on it: verify each cause once, record the outcome, then publish it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.catalog import Catalog
from shared.events import (
    CorrectionSubmitted,
    InquiryCompleted,
    NextStep,
    RequestSubmitted,
    ReviewRequested,
    VerificationCompleted,
    parse_inbox_event,
    parse_request_event,
)
from shared.kafka import PermanentError

from .domain import review_request
from .models import TABLES, Published, SubmissionInput, Verification
from .service import Agencies, verify_submission

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]
# What one verification publishes: InquiryCompleted per inquiry, the VerificationCompleted, and a
# ReviewRequested for the agency's inbox when the next step is its review.
Outcome = InquiryCompleted | VerificationCompleted | ReviewRequested


async def create_tables(engine: AsyncEngine) -> None:
    """Create inquiry's own tables, and only those, when they are missing."""
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=TABLES))


def _dump(outcomes: list[Outcome]) -> str:
    return json.dumps([outcome.model_dump(mode="json") for outcome in outcomes], ensure_ascii=False)


def _load(text: str) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for payload in json.loads(text):
        outcome: object = (
            parse_inbox_event(payload)
            if payload.get("event_type") == "ReviewRequested"
            else parse_request_event(payload)
        )
        if not isinstance(outcome, InquiryCompleted | VerificationCompleted | ReviewRequested):
            raise ValueError(f"a recorded verification holds a {type(outcome).__name__}")
        outcomes.append(outcome)
    return outcomes


# Core statements rather than ORM loads and flushes: every verification runs these, and the ORM's identity
# map and unit of work cost inquiry a fifth of its CPU in the benchmark for rows it reads or writes once.
async def recorded_outcomes(*, sessions: Sessions, cause_event_id: str) -> list[Outcome] | None:
    """The events recorded for this cause, in publish order; None when it was never verified."""
    found = await _recorded(sessions=sessions, cause_event_id=cause_event_id)
    return None if found is None else found[0]


async def _recorded(*, sessions: Sessions, cause_event_id: str) -> tuple[list[Outcome], bool] | None:
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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


def corrected(original: RequestSubmitted, correction: CorrectionSubmitted) -> RequestSubmitted:
    """The input after a correction; it takes the correction's event id, so every derived id derives from it."""
    return original.model_copy(
        update={
            "event_id": correction.event_id,
            "fields": {**original.fields, **correction.fields},
            "documents": correction.documents or original.documents,
            "occurred_at": correction.occurred_at,
        }
    )


async def _verify_and_record(
    *, sessions: Sessions, catalog: Catalog, agencies: Agencies, submission: RequestSubmitted
) -> list[Outcome]:
    completed, verification = await verify_submission(catalog=catalog, event=submission, agencies=agencies)
    outcomes: list[Outcome] = [*completed, verification]
    if verification.next_step is NextStep.AGENCY_REVIEW:
        service = catalog.get_version(submission.service_id, submission.catalog_version)
        if service is None:  # verify_submission refused an unknown service already; this keeps mypy honest
            raise PermanentError(f"service {submission.service_id!r} is not in this catalog")
        outcomes.append(review_request(service, submission, verification))
    return await record_verification(sessions=sessions, submission=submission, outcomes=outcomes)


async def verify_submission_once(
    *, sessions: Sessions, catalog: Catalog, agencies: Agencies, event: RequestSubmitted
) -> list[Outcome]:
    """The outcomes of a submission still to publish: on redelivery the recorded ones (no agency called), or
    none once they were all published; else fresh and recorded."""
    recorded = await _recorded(sessions=sessions, cause_event_id=event.event_id)
    if recorded is not None:
        # The stored input is left alone: a correction may have been merged into it since.
        outcomes, published = recorded
        return [] if published else outcomes
    return await _verify_and_record(sessions=sessions, catalog=catalog, agencies=agencies, submission=event)


async def verify_correction_once(
    *, sessions: Sessions, catalog: Catalog, agencies: Agencies, correction: CorrectionSubmitted
) -> list[Outcome] | None:
    """The outcomes of re-verifying with a correction merged in, still to publish (as for a submission); None
    when no submission is on record."""
    recorded = await _recorded(sessions=sessions, cause_event_id=correction.event_id)
    if recorded is not None:
        # Checked before merging: a later correction may already have built on this one's stored input.
        outcomes, published = recorded
        return [] if published else outcomes
    original = await load_submission_input(sessions=sessions, tracking_code=correction.tracking_code)
    if original is None:
        return None
    return await _verify_and_record(
        sessions=sessions, catalog=catalog, agencies=agencies, submission=corrected(original, correction)
    )
