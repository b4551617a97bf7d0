"""The projected SLA: due dates in working days, the clock stopped while the citizen acts, one breach event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from services.tracking.domain_folding import ProjectedRequest, fold
from services.tracking.domain_terms import ServiceTerms, catalog_terms
from services.tracking.service import Delivered, Position, Projector, Sessions, lookup
from services.tracking.service_sla import SlaWatcher
from services.tracking.store_migrations import migrate
from shared.catalog import load_catalog
from shared.db import make_sessionmaker
from shared.domain.identity import make_valid_national_id
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.domain.working_days import load_calendar
from shared.events import (
    Applicant,
    CorrectionSubmitted,
    NextStep,
    RequestEvent,
    RequestSubmitted,
    SlaBreached,
    VerificationCompleted,
    sla_breach_event_id,
)
from shared.topics import Topic
from testkit.databases import sqlite_database
from testkit.events import answering

KEY = b"lookup-key-for-tests-only"
NATIONAL_ID = make_valid_national_id("001234567")
CODES = TrackingCodeGenerator(key=b"s" * 32, replica_id=2)
CALENDAR = load_calendar()
TERMS = catalog_terms(load_catalog())
# Sunday 1 June 2025, 11:30 in Tehran (1404/03/11): the service allows 5 working days.
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


def submitted(at: datetime = T0) -> RequestSubmitted:
    return RequestSubmitted(
        tracking_code=CODES.next_code(),
        occurred_at=at,
        service_id="birth-certificate-duplicate",
        catalog_version=1,
        agency="civil-registry",
        applicant=Applicant(national_id=NATIONAL_ID, mobile="09121234567", birth_date=date(1990, 1, 31)),
        accept_by=at + timedelta(seconds=5),
    )


def verified(cause: RequestSubmitted, next_step: NextStep, at: datetime) -> VerificationCompleted:
    return VerificationCompleted(
        **answering(cause, "VerificationCompleted"),
        occurred_at=at,
        next_step=next_step,
        reason_fa="دلیل",
        reason_en="a reason",
    )


def corrected(cause: RequestSubmitted, at: datetime) -> CorrectionSubmitted:
    return CorrectionSubmitted(
        tracking_code=cause.tracking_code, occurred_at=at, accept_by=at + timedelta(seconds=5), fields={"a": "b"}
    )


def fold_all(events: list[RequestEvent]) -> ProjectedRequest:
    record = None
    for seq, event in enumerate(events):
        record = fold(
            record, event, seq=seq, digest=lambda national_id: "d" * 64, terms_of=TERMS, calendar=CALENDAR
        ).record
    assert record is not None
    return record


def test_due_date_counts_working_days_after_the_day_of_submission() -> None:
    record = fold_all([submitted()])
    assert record.duration_working_days == 5
    # Mon 2, Tue 3, (Wed 4 and Thu 5 are 14/15 Khordad, Thu/Fri the weekend), Sat 7, Sun 8, Mon 9.
    assert record.due_on == date(2025, 6, 9)


def test_the_clock_stops_while_waiting_for_the_citizen_and_moves_the_due_date_by_the_pause() -> None:
    request = submitted()
    paused_at = T0 + timedelta(minutes=5)
    waiting = fold_all([request, verified(request, NextStep.NEEDS_CORRECTION, paused_at)])
    assert waiting.status == "NEEDS_CORRECTION"
    assert waiting.due_on is None and waiting.paused_since == paused_at

    resumed_at = datetime(2025, 6, 10, 9, 0, tzinfo=UTC)
    record = fold_all(
        [request, verified(request, NextStep.NEEDS_CORRECTION, paused_at), corrected(request, resumed_at)]
    )
    paused_days = CALENDAR.working_days_between(date(2025, 6, 1), date(2025, 6, 10))
    assert record.paused_working_days == paused_days == 6
    assert record.paused_since is None
    assert record.due_on == CALENDAR.add_working_days(date(2025, 6, 1), 5 + paused_days)
    assert record.due_on is not None and record.due_on > date(2025, 6, 9)


def test_a_service_version_this_deployment_does_not_know_has_no_due_date() -> None:
    record = fold(
        None,
        submitted().model_copy(update={"catalog_version": 99}),
        seq=0,
        digest=lambda national_id: "d" * 64,
        terms_of=TERMS,
        calendar=CALENDAR,
    ).record
    assert record is not None and record.due_on is None and record.duration_working_days is None


def test_a_resume_stamped_before_its_pause_counts_no_pause() -> None:
    request = submitted()
    paused_at = T0 + timedelta(days=2)
    record = fold_all(
        [request, verified(request, NextStep.NEEDS_CORRECTION, paused_at), corrected(request, T0 + timedelta(days=1))]
    )
    assert record.paused_working_days == 0


def test_terms_of_an_unknown_service_are_none_and_known_ones_name_their_agencies() -> None:
    terms = TERMS("no-criminal-record-certificate", 1)
    assert isinstance(terms, ServiceTerms) and terms.duration_working_days == 7
    assert {item.agency for item in terms.inquiries} == {"civil-registry", "judiciary"}
    assert TERMS("no-such-service", 1) is None


# --- the watcher ----------------------------------------------------------------------------------


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    async with sqlite_database(tmp_path / "sla.db", migrate) as engine:
        yield make_sessionmaker(engine)


class Published(list[SlaBreached]):
    async def __call__(self, event: SlaBreached) -> None:
        self.append(event)


async def project(sessions: Sessions, events: list[RequestEvent], first_offset: int = 0) -> None:
    projector = Projector(sessions, KEY, TERMS, CALENDAR)
    await projector.fold_batch(
        [Delivered(Position(Topic.REQUESTS.value, 0, first_offset + n), event) for n, event in enumerate(events)]
    )


def tehran_noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 8, 30, tzinfo=UTC)


async def test_watcher_publishes_one_breach_once_the_due_day_has_passed(sessions: Sessions) -> None:
    late, decided = submitted(), submitted()
    await project(sessions, [late, decided, verified(decided, NextStep.REJECT, T0 + timedelta(minutes=1))])

    on_due_day = SlaWatcher(sessions=sessions, publish=Published(), now=lambda: tehran_noon(date(2025, 6, 9)))
    assert await on_due_day.check_once() == 0  # due by the end of the day: not late yet

    published = Published()
    watcher = SlaWatcher(sessions=sessions, publish=published, now=lambda: tehran_noon(date(2025, 6, 10)))
    assert await watcher.check_once() == 1
    [breach] = published
    assert breach.tracking_code == late.tracking_code  # the rejected one is final: no SLA
    assert breach.event_id == sla_breach_event_id(late.tracking_code, date(2025, 6, 9))
    assert await watcher.check_once() == 0  # published and not folded yet: not again

    restarted = Published()
    again = SlaWatcher(sessions=sessions, publish=restarted, now=lambda: tehran_noon(date(2025, 6, 10)))
    assert await again.check_once() == 1
    assert restarted[0].event_id == breach.event_id  # a restart publishes the same event: applied once

    await project(sessions, [breach, restarted[0]], first_offset=3)
    found = await lookup(sessions=sessions, tracking_code=late.tracking_code, national_id=NATIONAL_ID, lookup_key=KEY)
    assert found is not None
    record, timeline = found
    assert record.sla_breached and record.status == "SUBMITTED"
    assert [entry.event_type for entry in timeline] == ["RequestSubmitted", "SlaBreached"]
    assert timeline[-1].detail_en and "past its due date" in timeline[-1].detail_en
    assert await again.check_once() == 0


async def test_a_breached_request_may_be_complained_about(sessions: Sessions) -> None:
    from shared.events import ComplaintFiled

    late = submitted()
    breach = SlaBreached(
        event_id=sla_breach_event_id(late.tracking_code, date(2025, 6, 9)),
        tracking_code=late.tracking_code,
        occurred_at=tehran_noon(date(2025, 6, 10)),
        due_on=date(2025, 6, 9),
        duration_working_days=5,
    )
    filed_at = tehran_noon(date(2025, 6, 11))
    complaint = ComplaintFiled(
        tracking_code=late.tracking_code,
        occurred_at=filed_at,
        accept_by=filed_at + timedelta(seconds=5),
        complaint_id="c-9",
        text="هنوز خبری نیست",
    )
    await project(sessions, [late, breach, complaint])
    found = await lookup(sessions=sessions, tracking_code=late.tracking_code, national_id=NATIONAL_ID, lookup_key=KEY)
    assert found is not None
    record = found[0]
    assert record.complaint_open and record.open_complaint_id == "c-9" and record.complaint_filed_at == filed_at


def test_the_folds_plain_rows_have_exactly_the_tables_columns() -> None:
    # The fold works on dataclasses (cheap), written as rows of the SQLModel tables: they must never drift.
    from services.tracking.domain_folding import REQUEST_FIELDS, TIMELINE_FIELDS
    from services.tracking.store import RequestRecord, TimelineEntry

    assert set(REQUEST_FIELDS) == {column.name for column in RequestRecord.__table__.columns}  # type: ignore[attr-defined]
    assert set(TIMELINE_FIELDS) == {column.name for column in TimelineEntry.__table__.columns}  # type: ignore[attr-defined]


async def test_requests_are_counted_by_state_for_the_gauge(sessions: Sessions) -> None:
    from prometheus_client import REGISTRY

    waiting, decided = submitted(), submitted()
    await project(sessions, [waiting, decided, verified(decided, NextStep.REJECT, T0 + timedelta(minutes=1))])
    watcher = SlaWatcher(sessions=sessions, publish=Published())
    counts = await watcher.count_by_state()
    assert counts["SUBMITTED"] == 1 and counts["REJECTED"] == 1 and counts["APPROVED"] == 0
    assert REGISTRY.get_sample_value("khedmat_tracking_requests", {"state": "REJECTED"}) == 1
    assert REGISTRY.get_sample_value("khedmat_tracking_requests", {"state": "DELIVERED"}) == 0
