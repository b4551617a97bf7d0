"""inquiry's store: a recorded verification is re-published, never re-run; corrections re-verify once each."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from sqlmodel import delete, select

from services.inquiry.adapters import IdentityAnswer
from services.inquiry.service import Agencies, verify_submission_once
from services.inquiry.store import (
    Published,
    PublishMarks,
    Sessions,
    SubmissionInput,
    Verification,
    create_tables,
    load_submission_input,
    record_verification,
    recorded_outcomes,
)
from shared.db import make_engine, make_sessionmaker
from shared.events import (
    CorrectionSubmitted,
    InquiryCompleted,
    InquiryOutcome,
    NextStep,
    RequestSubmitted,
    VerificationCompleted,
    derived_event_id,
)
from testkit.events import answering
from tests.unit import inquiry_wiring as wiring
from tests.unit.inquiry_wiring import BIRTH_DATE, CATALOG, CODES, NATIONAL_ID, FakeRegistry, wired


def in_a_minute() -> datetime:
    # TestKafkaBroker stamps records with the current time as their LogAppendTime.
    return datetime.now(UTC) + timedelta(minutes=1)


def submitted() -> RequestSubmitted:
    return wiring.submitted(fields={"reason": "lost", "office": "tehran"})


def correction(tracking_code: str, **fields: str) -> CorrectionSubmitted:
    return CorrectionSubmitted(tracking_code=tracking_code, fields=fields, accept_by=in_a_minute())


@pytest.fixture
def sessions(inquiry_sessions: Sessions) -> Sessions:
    return inquiry_sessions


async def stored_input(sessions: Sessions, tracking_code: str) -> RequestSubmitted:
    found = await load_submission_input(sessions=sessions, tracking_code=tracking_code)
    assert found is not None
    return found


def expected_ids(cause_event_id: str) -> list[str]:
    return [
        derived_event_id(cause_event_id, "InquiryCompleted", "identity"),
        derived_event_id(cause_event_id, "VerificationCompleted"),
    ]


# --- through the record handler --------------------------------------------------------------------


async def test_submission_is_verified_once_and_recorded(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    event = submitted()
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(event)
    assert w.registry.calls == [(NATIONAL_ID, BIRTH_DATE)]
    assert w.ids() == expected_ids(event.event_id)
    async with sessions() as session:
        [row] = (await session.exec(select(Verification))).all()
        [kept] = (await session.exec(select(SubmissionInput))).all()
    assert (row.cause_event_id, row.tracking_code) == (event.event_id, event.tracking_code)
    assert [item["event_id"] for item in json.loads(row.events)] == expected_ids(event.event_id)
    assert (kept.tracking_code, kept.service_id, kept.catalog_version) == (
        event.tracking_code,
        event.service_id,
        event.catalog_version,
    )
    assert await stored_input(sessions, event.tracking_code) == event


async def test_redelivered_submission_republishes_the_recorded_events_without_calling_the_agency(
    sessions: Sessions,
) -> None:
    w = wired(sessions=sessions)
    event = submitted()
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(event)
        first = w.outcomes()
        # A crash after recording, before every event was acknowledged: the publish mark is missing.
        async with sessions() as session, session.begin():
            await session.exec(delete(Published))
        # The agency would now answer differently: the recorded outcome stands all the same.
        w.registry.answer = IdentityAnswer(match=False, alive=True)
        await w.feed.deliver(event)
        # Published and marked this time: a further redelivery publishes nothing.
        await w.feed.deliver(event)
    assert len(w.registry.calls) == 1
    assert w.outcomes() == first + first  # same ids, same content, same order
    assert w.outcomes()[-1]["next_step"] == NextStep.APPROVE.value


async def test_correction_re_verifies_with_merged_fields_under_ids_derived_from_it(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    event = submitted()
    fix = correction(event.tracking_code, reason="damaged")
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(event, fix)
    assert len(w.registry.calls) == 2
    assert w.ids() == expected_ids(event.event_id) + expected_ids(fix.event_id)
    inquiry, verification = w.outcomes()[2:]
    assert inquiry["caused_by"] == verification["caused_by"] == fix.event_id
    merged = await stored_input(sessions, event.tracking_code)
    assert merged.event_id == fix.event_id
    assert merged.fields == {"reason": "damaged", "office": "tehran"}
    assert merged.applicant == event.applicant
    assert merged.occurred_at == fix.occurred_at


async def test_redelivered_correction_is_not_verified_again(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    event = submitted()
    fix = correction(event.tracking_code, reason="damaged")
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(event, fix, fix)
    assert len(w.registry.calls) == 2
    assert w.ids() == expected_ids(event.event_id) + expected_ids(fix.event_id)


async def test_a_second_correction_builds_on_the_first_and_gets_new_ids(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    event = submitted()
    first, second = correction(event.tracking_code, reason="damaged"), correction(event.tracking_code, office="qom")
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(event, first, second)
    assert len(w.registry.calls) == 3
    assert len(set(w.ids())) == 6
    assert (await stored_input(sessions, event.tracking_code)).fields == {"reason": "damaged", "office": "qom"}


async def test_redelivered_submission_after_a_correction_keeps_the_corrected_input(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    event = submitted()
    fix = correction(event.tracking_code, reason="damaged")
    async with TestKafkaBroker(w.broker):
        # A crash before the offsets were committed replays the partition from the submission on.
        await w.feed.deliver(event, fix, event, fix)
    assert len(w.registry.calls) == 2
    kept = await stored_input(sessions, event.tracking_code)
    assert (kept.event_id, kept.fields["reason"]) == (fix.event_id, "damaged")


async def test_correction_without_a_recorded_submission_is_skipped(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(correction(CODES.next_code(), reason="damaged"))
    assert w.registry.calls == []
    assert w.outcomes() == []
    assert w.dead_letters.messages == []


async def test_correction_appended_after_accept_by_is_skipped(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    event = submitted()
    late = correction(event.tracking_code, reason="damaged")
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(event)
        await w.feed.deliver(late, timestamp_ms=int(late.accept_by.timestamp() * 1000) + 1_000)
    assert len(w.registry.calls) == 1
    assert w.ids() == expected_ids(event.event_id)
    assert (await stored_input(sessions, event.tracking_code)).event_id == event.event_id


# --- the store ------------------------------------------------------------------------------------


async def test_unknown_cause_has_no_recorded_outcomes(sessions: Sessions) -> None:
    assert await recorded_outcomes(sessions=sessions, cause_event_id="nothing") is None
    assert await load_submission_input(sessions=sessions, tracking_code=CODES.next_code()) is None


async def test_use_case_runs_the_agencies_only_for_the_first_delivery(sessions: Sessions) -> None:
    registry = FakeRegistry()
    event = submitted()
    agencies = Agencies(civil_registry=registry)
    key = b"audit-subject-key"
    first = await verify_submission_once(
        sessions=sessions, catalog=CATALOG, agencies=agencies, event=event, audit_key=key
    )
    again = await verify_submission_once(
        sessions=sessions, catalog=CATALOG, agencies=agencies, event=event, audit_key=key
    )
    assert again == first
    assert [type(outcome) for outcome in again] == [InquiryCompleted, VerificationCompleted]
    assert len(registry.calls) == 1


async def test_the_first_recorded_outcome_wins_a_concurrent_record(sessions: Sessions) -> None:
    event = submitted()
    verdicts = [
        VerificationCompleted(
            **answering(event, "VerificationCompleted"),
            next_step=step,
            inquiries={"identity": outcome},
        )
        for step, outcome in (
            (NextStep.APPROVE, InquiryOutcome.PASSED),
            (NextStep.AGENCY_REVIEW, InquiryOutcome.UNAVAILABLE),
        )
    ]
    won = await record_verification(sessions=sessions, submission=event, outcomes=[verdicts[0]])
    lost = await record_verification(sessions=sessions, submission=event, outcomes=[verdicts[1]])
    assert won == lost == [verdicts[0]]
    assert await recorded_outcomes(sessions=sessions, cause_event_id=event.event_id) == [verdicts[0]]


async def test_publish_marks_are_written_in_one_batch_and_a_repeated_mark_is_harmless(sessions: Sessions) -> None:
    marks = PublishMarks(sessions)
    for cause in ("a", "b", "c"):
        marks.add(cause)
    await marks.flush()
    marks.add("b")  # a racing delivery marks it again
    marks.add("d")
    await marks.flush()
    await marks.flush()  # nothing pending: no transaction at all
    async with sessions() as session:
        marked = set((await session.exec(select(Published.cause_event_id))).all())
    assert marked == {"a", "b", "c", "d"}


async def test_publish_marks_that_cannot_be_written_are_kept_for_the_next_flush(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-tables.db'}")
    marks = PublishMarks(make_sessionmaker(engine))
    marks.add("a")
    with pytest.raises(Exception, match="no such table"):
        await marks.flush()
    await create_tables(engine)
    await marks.flush()
    async with make_sessionmaker(engine)() as session:
        assert (await session.exec(select(Published.cause_event_id))).all() == ["a"]
    await engine.dispose()
