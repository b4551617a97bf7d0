"""tracking folds the citizen's and the agency's commands: state machine, agency authority, timeline words."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from services.tracking.internal_api import internal_router
from services.tracking.settings import TrackingSettings
from services.tracking.store import RequestRecord
from shared.domain.state_machine import RequestState
from shared.envelope import cloudevent_headers, event_value
from shared.events import (
    REQUEST_EVENT_TYPES,
    Applicant,
    ComplaintFiled,
    ComplaintResolved,
    CorrectionSubmitted,
    Decision,
    DocumentRef,
    NextStep,
    RequestCancelled,
    RequestDecided,
    RequestEvent,
    RequestSubmitted,
    ResultDelivered,
    parse_request_event,
)
from shared.http import install_problem_handlers
from tests.asgi import asgi_client
from tests.problems import assert_problem
from tests.unit.test_tracking import CODES, NATIONAL_ID, T0, Feed, inquiry_done, new_database, verified

SERVICE_ID = "property-ownership-certificate"
AGENCY = "property-registry"


# --- events ---------------------------------------------------------------------------------------


def submitted() -> RequestSubmitted:
    return RequestSubmitted(
        tracking_code=CODES.next_code(),
        occurred_at=T0,
        service_id=SERVICE_ID,
        catalog_version=1,
        agency=AGENCY,
        applicant=Applicant(national_id=NATIONAL_ID, mobile="09121234567", birth_date=date(1990, 1, 31)),
        accept_by=T0 + timedelta(seconds=5),
    )


def to_state(next_step: NextStep) -> list[RequestEvent]:
    """A submission taken through its inquiry to the given verification outcome."""
    cause = submitted()
    return [cause, inquiry_done(cause), verified(cause, next_step)]


def command_fields(code: str, minute: int = 1) -> dict[str, Any]:
    at = T0 + timedelta(minutes=minute)
    return {"tracking_code": code, "occurred_at": at, "accept_by": at + timedelta(seconds=5)}


def decided(code: str, decision: Decision, *, agency: str = AGENCY, service_id: str = SERVICE_ID) -> RequestDecided:
    reasons: dict[str, Any] = {}
    if decision is not Decision.APPROVE:
        reasons = {"reason_fa": "سند مالکیت معارض دارد", "reason_en": "The deed has a competing claim"}
    if decision is Decision.REJECT:
        reasons["legal_basis"] = "Registration Act, art. 22"
    return RequestDecided(**command_fields(code), agency=agency, service_id=service_id, decision=decision, **reasons)


def delivered(code: str, *, agency: str = AGENCY) -> ResultDelivered:
    return ResultDelivered(
        **command_fields(code, 2),
        agency=agency,
        service_id=SERVICE_ID,
        result_url="https://property-registry.example.ir/r/1",
        summary_fa="گواهی صادر شد",
        summary_en="The certificate was issued",
    )


def complaint(code: str) -> ComplaintFiled:
    return ComplaintFiled(**command_fields(code, 3), complaint_id="c-1", text="The rejection ignores my deed")


def resolved(code: str, *, agency: str = AGENCY, complaint_id: str = "c-1") -> ComplaintResolved:
    return ComplaintResolved(
        **command_fields(code, 4),
        agency=agency,
        service_id=SERVICE_ID,
        complaint_id=complaint_id,
        resolution_fa="پرونده دوباره بررسی شد",
        resolution_en="The file was reviewed again",
    )


def cancelled(code: str, reason_fa: str | None = None) -> RequestCancelled:
    return RequestCancelled(**command_fields(code, 5), reason_fa=reason_fa)


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[Feed]:
    engine, sessions = await new_database(tmp_path / "tracking.db")
    yield Feed(sessions)
    await engine.dispose()


async def in_state(feed: Feed, next_step: NextStep) -> str:
    events = to_state(next_step)
    await feed.fold(*events)
    return events[0].tracking_code


# --- the agency's decision ------------------------------------------------------------------------


async def test_approval_of_a_request_in_review_approves_it(feed: Feed) -> None:
    code = await in_state(feed, NextStep.AGENCY_REVIEW)
    event = decided(code, Decision.APPROVE)
    change = await feed.fold(event)
    assert change is not None
    assert (change.previous_status, change.status) == (RequestState.IN_REVIEW, RequestState.APPROVED)
    assert (change.caused_by, change.caused_by_type) == (event.event_id, "RequestDecided")
    record = await feed.record(code)
    assert record.status == "APPROVED"
    assert record.waiting_for_en == "Waiting for the agency to deliver the result"
    assert record.waiting_for_fa
    last = (await feed.timeline(code))[-1]
    assert (last.applied, last.status_after) == (True, "APPROVED")
    assert last.detail_fa == "سازمان ثبت اسناد و املاک کشور درخواست را تأیید کرد."  # the agency by its Persian name
    assert last.detail_en and "Deeds and Properties Registration Organization" in last.detail_en


async def test_rejection_rejects_and_status_change_carries_the_reason(feed: Feed) -> None:
    code = await in_state(feed, NextStep.AGENCY_REVIEW)
    change = await feed.fold(decided(code, Decision.REJECT))
    assert change is not None and change.status is RequestState.REJECTED
    assert change.reason_fa == "سند مالکیت معارض دارد"
    assert change.reason_en == "The deed has a competing claim"
    assert (await feed.outbox())[-1] == change
    record = await feed.record(code)
    assert record.status == "REJECTED"
    assert (record.waiting_for_fa, record.waiting_for_en) == (None, None)
    last = (await feed.timeline(code))[-1]
    assert last.detail_en and "Registration Act, art. 22" in last.detail_en
    assert last.detail_fa and "Registration Act, art. 22" in last.detail_fa


async def test_needs_correction_waits_for_the_citizen_and_a_correction_verifies_again(feed: Feed) -> None:
    code = await in_state(feed, NextStep.AGENCY_REVIEW)
    change = await feed.fold(decided(code, Decision.NEEDS_CORRECTION))
    assert change is not None and change.status is RequestState.NEEDS_CORRECTION
    assert change.reason_en == "The deed has a competing claim"
    record = await feed.record(code)
    assert (record.waiting_for_fa, record.waiting_for_en) == (
        "در انتظار اصلاح از سوی شما",
        "Waiting for your correction",
    )

    correction = CorrectionSubmitted(
        **command_fields(code, 2),
        fields={"deed_number": "123"},
        documents=[DocumentRef(kind="deed", sha256="b" * 64, media_type="application/pdf", size_bytes=10)],
    )
    change = await feed.fold(correction)
    assert change is not None
    assert (change.previous_status, change.status) == (RequestState.NEEDS_CORRECTION, RequestState.VERIFYING)
    assert (change.reason_fa, change.reason_en) == (None, None)
    record = await feed.record(code)
    # Every inquiry runs again on the corrected details: the request waits for their agencies by name.
    assert record.waiting_for_en is not None
    assert record.waiting_for_en.startswith("Waiting for the inquiry answer from")
    assert json.loads(record.documents)[-1]["kind"] == "deed"


async def test_decision_from_another_agency_is_refused_on_the_timeline(feed: Feed) -> None:
    code = await in_state(feed, NextStep.AGENCY_REVIEW)
    before = await feed.record(code)
    outbox_before = await feed.outbox()
    stray = decided(code, Decision.APPROVE, agency="tax")
    assert await feed.fold(stray) is None
    after = await feed.record(code)
    assert after.model_dump() == before.model_dump()
    assert after.status == "IN_REVIEW"
    assert await feed.outbox() == outbox_before
    last = (await feed.timeline(code))[-1]
    assert (last.event_id, last.event_type, last.applied, last.status_after) == (
        stray.event_id,
        "RequestDecided",
        False,
        None,
    )
    assert last.detail_en == "Event refused: agency tax is not this request's agency"
    assert last.detail_fa and "سازمان امور مالیاتی کشور" in last.detail_fa and "tax" not in last.detail_fa


async def test_decision_naming_another_service_is_refused(feed: Feed) -> None:
    code = await in_state(feed, NextStep.AGENCY_REVIEW)
    assert await feed.fold(decided(code, Decision.APPROVE, service_id="another-service")) is None
    assert (await feed.record(code)).status == "IN_REVIEW"
    last = (await feed.timeline(code))[-1]
    assert not last.applied
    assert last.detail_en and "another-service" in last.detail_en


async def test_decision_outside_review_is_refused_with_the_state_machines_reason(feed: Feed) -> None:
    code = await in_state(feed, NextStep.APPROVE)
    assert await feed.fold(decided(code, Decision.REJECT)) is None
    assert (await feed.record(code)).status == "APPROVED"
    last = (await feed.timeline(code))[-1]
    assert last.detail_en == "Event refused: decide_reject is not allowed in state APPROVED"


async def test_agency_command_for_an_unknown_request_creates_nothing(feed: Feed) -> None:
    stray = decided(CODES.next_code(), Decision.APPROVE)
    assert await feed.fold(stray) is None
    [entry] = await feed.timeline(stray.tracking_code)
    assert (entry.applied, entry.detail_en) == (False, "Event refused: decide_approve is not allowed in no request")
    async with feed.sessions() as session:
        assert await session.get(RequestRecord, stray.tracking_code) is None


# --- cancellation ---------------------------------------------------------------------------------


async def test_cancellation_after_approval_is_refused(feed: Feed) -> None:
    code = await in_state(feed, NextStep.APPROVE)
    assert await feed.fold(cancelled(code)) is None
    assert (await feed.record(code)).status == "APPROVED"
    last = (await feed.timeline(code))[-1]
    assert (last.event_type, last.applied) == ("RequestCancelled", False)
    assert last.detail_en == "Event refused: cancel is not allowed in state APPROVED"


async def test_cancellation_before_a_decision_cancels_without_putting_the_citizens_words_on_the_bus(
    feed: Feed,
) -> None:
    code = await in_state(feed, NextStep.AGENCY_REVIEW)
    change = await feed.fold(cancelled(code, reason_fa="منصرف شدم"))
    assert change is not None and change.status is RequestState.CANCELLED
    assert (change.reason_fa, change.reason_en) == (None, None)
    record = await feed.record(code)
    assert (record.status, record.waiting_for_en) == ("CANCELLED", None)
    last = (await feed.timeline(code))[-1]
    assert last.detail_fa and "منصرف شدم" in last.detail_fa


# --- complaints -----------------------------------------------------------------------------------


async def test_complaint_after_rejection_opens_and_its_resolution_closes_it(feed: Feed) -> None:
    code = await in_state(feed, NextStep.REJECT)
    changes_before = len(await feed.outbox())

    assert await feed.fold(complaint(code)) is None  # a flag, not a status change
    record = await feed.record(code)
    assert (record.status, record.complaint_open) == ("REJECTED", True)
    assert record.waiting_for_en == "Waiting for the agency's answer to your complaint"
    filed = (await feed.timeline(code))[-1]
    assert (filed.applied, filed.status_after) == (True, "REJECTED")
    assert filed.detail_en and "c-1" in filed.detail_en
    assert "ignores my deed" not in (filed.detail_en + (filed.detail_fa or ""))

    assert await feed.fold(resolved(code)) is None
    record = await feed.record(code)
    assert (record.status, record.complaint_open) == ("REJECTED", False)
    assert (record.waiting_for_fa, record.waiting_for_en) == (None, None)
    answer = (await feed.timeline(code))[-1]
    assert answer.applied and answer.detail_en and "reviewed again" in answer.detail_en
    assert len(await feed.outbox()) == changes_before


async def test_complaint_before_a_decision_is_refused(feed: Feed) -> None:
    code = await in_state(feed, NextStep.AGENCY_REVIEW)
    assert await feed.fold(complaint(code)) is None
    record = await feed.record(code)
    assert record.complaint_open is False
    last = (await feed.timeline(code))[-1]
    assert last.detail_en == "Event refused: a complaint needs a decision or a breached SLA"


async def test_resolution_from_another_agency_leaves_the_complaint_open(feed: Feed) -> None:
    code = await in_state(feed, NextStep.REJECT)
    await feed.fold(complaint(code))
    assert await feed.fold(resolved(code, agency="judiciary")) is None
    assert (await feed.record(code)).complaint_open is True
    assert not (await feed.timeline(code))[-1].applied


async def test_resolution_of_another_complaint_id_is_refused_and_leaves_the_open_one_open(feed: Feed) -> None:
    code = await in_state(feed, NextStep.REJECT)
    await feed.fold(complaint(code))
    assert await feed.fold(resolved(code, complaint_id="00000000-0000-0000-0000-000000000000")) is None
    record = await feed.record(code)
    assert (record.complaint_open, record.open_complaint_id) == (True, "c-1")
    refused = (await feed.timeline(code))[-1]
    assert not refused.applied
    assert refused.detail_en == (
        "Event refused: complaint 00000000-0000-0000-0000-000000000000 is not the request's open complaint"
    )
    assert refused.detail_fa and "شکایت باز" in refused.detail_fa
    # The real id still resolves it.
    await feed.fold(resolved(code))
    assert (await feed.record(code)).complaint_open is False
    assert (await feed.timeline(code))[-1].applied


async def test_resolution_without_an_open_complaint_is_refused(feed: Feed) -> None:
    code = await in_state(feed, NextStep.REJECT)
    assert await feed.fold(resolved(code)) is None
    assert (await feed.timeline(code))[-1].detail_en == "Event refused: no complaint is open"


# --- the result -----------------------------------------------------------------------------------


async def test_result_delivered_on_an_approved_request_delivers_it(feed: Feed) -> None:
    code = await in_state(feed, NextStep.AGENCY_REVIEW)
    await feed.fold(decided(code, Decision.APPROVE))
    change = await feed.fold(delivered(code))
    assert change is not None
    assert (change.previous_status, change.status) == (RequestState.APPROVED, RequestState.DELIVERED)
    record = await feed.record(code)
    assert (record.status, record.waiting_for_en) == ("DELIVERED", None)
    last = (await feed.timeline(code))[-1]
    assert last.detail_en and "https://property-registry.example.ir/r/1" in last.detail_en


async def test_result_from_another_agency_is_refused(feed: Feed) -> None:
    code = await in_state(feed, NextStep.APPROVE)
    assert await feed.fold(delivered(code, agency="postal")) is None
    assert (await feed.record(code)).status == "APPROVED"


async def test_redelivered_decision_changes_nothing(feed: Feed) -> None:
    code = await in_state(feed, NextStep.AGENCY_REVIEW)
    event = decided(code, Decision.APPROVE)
    await feed.fold(event)
    assert await feed.fold(event) is None
    assert [e.event_id for e in await feed.timeline(code)].count(event.event_id) == 1


# --- the events themselves ------------------------------------------------------------------------


def every_command(code: str) -> list[RequestEvent]:
    return [
        CorrectionSubmitted(**command_fields(code), fields={"a": "b"}, note="see the new photo"),
        cancelled(code, reason_fa="منصرف شدم"),
        complaint(code),
        decided(code, Decision.REJECT),
        delivered(code),
        resolved(code),
    ]


@pytest.mark.parametrize("event", every_command("0" * 15), ids=lambda event: event.event_type)
def test_command_event_survives_the_envelope_and_is_known(event: RequestEvent) -> None:
    assert parse_request_event(event_value(event)) == event
    assert event.event_type in REQUEST_EVENT_TYPES
    assert cloudevent_headers(event, source="/t")["ce_type"] == f"ir.khedmat.desk.{event.event_type}.v1"
    assert NATIONAL_ID not in event.model_dump_json()


def test_rejection_without_legal_basis_is_not_an_event() -> None:
    with pytest.raises(ValidationError, match="legal_basis"):
        RequestDecided(
            **command_fields("0" * 15),
            agency=AGENCY,
            service_id=SERVICE_ID,
            decision=Decision.REJECT,
            reason_fa="دلیل",
            reason_en="reason",
        )


@pytest.mark.parametrize("both", [True, False])
def test_result_is_exactly_one_of_a_document_and_a_link(both: bool) -> None:
    document = DocumentRef(kind="result", sha256="c" * 64, media_type="application/pdf", size_bytes=1)
    with pytest.raises(ValidationError):
        ResultDelivered(
            **command_fields("0" * 15),
            agency=AGENCY,
            service_id=SERVICE_ID,
            result=document if both else None,
            result_url="https://x.example.ir" if both else None,
            summary_fa="خلاصه",
            summary_en="summary",
        )


# --- the internal route intake checks commands against ----------------------------------------------

INTERNAL_KEY = "internal-key-for-tests"


@pytest.fixture
async def internal(feed: Feed) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(internal_router)
    app.state.tracking = SimpleNamespace(sessions=feed.sessions)
    app.state.internal_key = INTERNAL_KEY.encode()
    async with asgi_client(app, "http://tracking") as client:
        yield client


async def test_internal_route_gives_a_requests_facts_without_personal_data(
    feed: Feed, internal: httpx.AsyncClient
) -> None:
    code = await in_state(feed, NextStep.REJECT)
    await feed.fold(complaint(code))
    response = await internal.get(f"/internal/v1/requests/{code}", headers={"X-Internal-Key": INTERNAL_KEY})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "tracking_code": code,
        "service_id": SERVICE_ID,
        "catalog_version": 1,
        "agency": AGENCY,
        "status": "REJECTED",
        "sla_breached": False,
        "complaint_open": True,
        "open_complaint_id": "c-1",
    }
    assert NATIONAL_ID not in response.text


@pytest.mark.parametrize("key", [None, "", "wrong-key"])
async def test_internal_route_without_the_service_key_is_a_401(
    feed: Feed, internal: httpx.AsyncClient, key: str | None
) -> None:
    code = await in_state(feed, NextStep.APPROVE)
    headers = {"X-Internal-Key": key} if key is not None else {}
    assert_problem(await internal.get(f"/internal/v1/requests/{code}", headers=headers), 401)


@pytest.mark.parametrize("code", [CODES.next_code(), "12345"])
async def test_internal_route_for_an_unknown_or_malformed_code_is_a_404(internal: httpx.AsyncClient, code: str) -> None:
    response = await internal.get(f"/internal/v1/requests/{code}", headers={"X-Internal-Key": INTERNAL_KEY})
    assert_problem(response, 404, slug="request-unknown")


def test_the_dev_internal_key_is_refused_outside_local_and_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KHEDMAT_DEPLOYMENT_ENVIRONMENT", "production")
    monkeypatch.setenv("TRACKING_LOOKUP_KEY", "a-real-lookup-key")
    monkeypatch.setenv("KHEDMAT_AUDIT_SUBJECT_KEY", "a-real-audit-subject-key")
    with pytest.raises(ValidationError, match="TRACKING_INTERNAL_KEY"):
        TrackingSettings()
    monkeypatch.setenv("TRACKING_INTERNAL_KEY", "a-real-internal-key")
    assert TrackingSettings().internal_key.get_secret_value() == "a-real-internal-key"
