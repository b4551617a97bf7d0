"""inquiry's store and the use cases on it: verify each cause once, record the outcome, then publish it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel
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
from .models import TABLES, SubmissionInput, Verification
from .service import Agencies, verify_submission

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


async def recorded_outcomes(*, sessions: Sessions, cause_event_id: str) -> list[Outcome] | None:
    """The events recorded for this cause, in publish order; None when it was never verified."""
    async with sessions() as session:
        row = await session.get(Verification, cause_event_id)
    return None if row is None else _load(row.events)


async def load_submission_input(*, sessions: Sessions, tracking_code: str) -> RequestSubmitted | None:
    """The submission (with the corrections merged so far) the inquiries of this request run on."""
    async with sessions() as session:
        row = await session.get(SubmissionInput, tracking_code)
    if row is None:
        return None
    submission = parse_request_event(json.loads(row.submission))
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
    try:
        async with sessions() as session, session.begin():
            stored = await session.get(SubmissionInput, submission.tracking_code)
            if stored is None:
                stored = SubmissionInput(
                    tracking_code=submission.tracking_code,
                    submission=submission.model_dump_json(),
                    service_id=submission.service_id,
                    catalog_version=submission.catalog_version,
                )
                session.add(stored)
            else:
                stored.submission = submission.model_dump_json()
                stored.service_id = submission.service_id
                stored.catalog_version = submission.catalog_version
            session.add(
                Verification(
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
    """The outcomes of a submission: the recorded ones on redelivery (no agency called), else fresh and recorded."""
    recorded = await recorded_outcomes(sessions=sessions, cause_event_id=event.event_id)
    if recorded is not None:
        # The stored input is left alone: a correction may have been merged into it since.
        return recorded
    return await _verify_and_record(sessions=sessions, catalog=catalog, agencies=agencies, submission=event)


async def verify_correction_once(
    *, sessions: Sessions, catalog: Catalog, agencies: Agencies, correction: CorrectionSubmitted
) -> list[Outcome] | None:
    """The outcomes of re-verifying with a correction merged in; None when no submission is on record."""
    recorded = await recorded_outcomes(sessions=sessions, cause_event_id=correction.event_id)
    if recorded is not None:
        # Checked before merging: a later correction may already have built on this one's stored input.
        return recorded
    original = await load_submission_input(sessions=sessions, tracking_code=correction.tracking_code)
    if original is None:
        return None
    return await _verify_and_record(
        sessions=sessions, catalog=catalog, agencies=agencies, submission=corrected(original, correction)
    )
