"""inquiry: the verdict, the civil-registry adapter over a mock transport, the use case and the record handler."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from tenacity import wait_none

from services.inquiry import adapters
from services.inquiry.adapters import (
    MAX_ANSWER_BYTES,
    AgencyRefused,
    AgencyUnavailable,
    HttpCivilRegistry,
    IdentityAnswer,
)
from services.inquiry.domain import InquiryResult, decide
from services.inquiry.service import Agencies, run_inquiry, verify_submission
from services.inquiry.store import Sessions
from shared.catalog import Catalog, DecisionMode, ServiceDefinition
from shared.catalog import Inquiry as CatalogInquiry
from shared.envelope import event_value
from shared.events import (
    InquiryCompleted,
    InquiryOutcome,
    NextStep,
    VerificationCompleted,
    derived_event_id,
    parse_request_event,
)
from shared.kafka import PermanentError
from tests.unit.inquiry_wiring import (
    BIRTH_DATE,
    CATALOG,
    CODES,
    NATIONAL_ID,
    SERVICE_ID,
    FakeRegistry,
    submitted,
    wired,
)
from tests.unit.mock_agencies import Handler, Script, drop, raw, timeout

IDENTITY_PATH = "/civil-registry/v1/identity"


def seeded_service() -> ServiceDefinition:
    service = CATALOG.get(SERVICE_ID)
    assert service is not None
    return service


SERVICE = seeded_service()


# --- the verdict ----------------------------------------------------------------------------------


def result(
    outcome: InquiryOutcome, inquiry: str = "identity", *, reason_fa: str | None = None, reason_en: str | None = None
) -> InquiryResult:
    return InquiryResult(inquiry, "civil-registry", outcome, reason_fa=reason_fa, reason_en=reason_en)


def reviewed_service() -> ServiceDefinition:
    return SERVICE.model_copy(update={"decision": DecisionMode.AGENCY_REVIEW})


def test_all_passed_with_automatic_decision_is_approved() -> None:
    verdict = decide(SERVICE, [result(InquiryOutcome.PASSED), result(InquiryOutcome.PASSED, "address")])
    assert verdict.next_step is NextStep.APPROVE
    assert verdict.reason_fa is None and verdict.reason_en is None


def test_no_inquiries_with_automatic_decision_is_approved() -> None:
    assert decide(SERVICE, []).next_step is NextStep.APPROVE


def test_all_passed_with_agency_decision_goes_to_review() -> None:
    verdict = decide(reviewed_service(), [result(InquiryOutcome.PASSED)])
    assert verdict.next_step is NextStep.AGENCY_REVIEW


def test_failed_inquiry_asks_for_a_correction_with_its_reasons() -> None:
    verdict = decide(
        SERVICE,
        [
            result(InquiryOutcome.PASSED),
            result(InquiryOutcome.FAILED, "identity", reason_fa="علت یک", reason_en="first reason"),
            result(InquiryOutcome.FAILED, "address", reason_fa="علت دو", reason_en="second reason"),
        ],
    )
    assert verdict.next_step is NextStep.NEEDS_CORRECTION
    assert verdict.reason_en == "first reason second reason"
    assert verdict.reason_fa == "علت یک علت دو"


def test_failed_inquiry_without_reason_has_no_reason_text() -> None:
    verdict = decide(SERVICE, [result(InquiryOutcome.FAILED)])
    assert verdict.next_step is NextStep.NEEDS_CORRECTION
    assert verdict.reason_en is None and verdict.reason_fa is None


def test_failure_outweighs_an_unavailable_agency() -> None:
    verdict = decide(SERVICE, [result(InquiryOutcome.UNAVAILABLE), result(InquiryOutcome.FAILED, "address")])
    assert verdict.next_step is NextStep.NEEDS_CORRECTION


@pytest.mark.parametrize("service", [SERVICE, reviewed_service()], ids=["automatic", "agency-review"])
def test_unavailable_agency_sends_the_request_to_review(service: ServiceDefinition) -> None:
    verdict = decide(service, [result(InquiryOutcome.PASSED), result(InquiryOutcome.UNAVAILABLE, "address")])
    assert verdict.next_step is NextStep.AGENCY_REVIEW
    assert verdict.reason_en and verdict.reason_fa


# --- the civil registry over HTTP -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the retry budget, drop the waits between attempts (they only cost test time)."""
    monkeypatch.setattr(adapters, "wait_random_exponential", lambda **_: wait_none())


def answer(status: int = 200, **payload: Any) -> Handler:
    return lambda _request: httpx.Response(status, json=payload or {"match": True, "alive": True})


@pytest.fixture
async def agency() -> AsyncIterator[Callable[..., tuple[HttpCivilRegistry, Script]]]:
    clients: list[httpx.AsyncClient] = []

    def make(*responses: Handler, max_attempts: int = 3) -> tuple[HttpCivilRegistry, Script]:
        script = Script(list(responses))
        client = httpx.AsyncClient(transport=httpx.MockTransport(script), base_url="http://agencies")
        clients.append(client)
        return HttpCivilRegistry(client, max_attempts=max_attempts), script

    yield make
    for client in clients:
        await client.aclose()


async def check(registry: HttpCivilRegistry) -> IdentityAnswer:
    return await registry.check_identity(national_id=NATIONAL_ID, birth_date=BIRTH_DATE)


async def test_registry_match_is_reported(agency: Callable[..., tuple[HttpCivilRegistry, Script]]) -> None:
    registry, script = agency(answer(match=True, alive=True))
    assert await check(registry) == IdentityAnswer(match=True, alive=True)
    [request] = script.requests
    assert request.method == "POST"
    assert request.url.path == IDENTITY_PATH
    assert json.loads(request.content) == {"national_id": NATIONAL_ID, "birth_date": "1990-01-31"}


async def test_registry_mismatch_is_reported(agency: Callable[..., tuple[HttpCivilRegistry, Script]]) -> None:
    registry, script = agency(answer(match=False, alive=True))
    assert await check(registry) == IdentityAnswer(match=False, alive=True)
    assert len(script.requests) == 1


async def test_registry_deceased_is_reported(agency: Callable[..., tuple[HttpCivilRegistry, Script]]) -> None:
    registry, _ = agency(answer(match=True, alive=False))
    assert await check(registry) == IdentityAnswer(match=True, alive=False)


async def test_server_error_is_retried_until_it_succeeds(
    agency: Callable[..., tuple[HttpCivilRegistry, Script]],
) -> None:
    registry, script = agency(answer(503, error="busy"), answer(503, error="busy"), answer(match=True, alive=True))
    assert await check(registry) == IdentityAnswer(match=True, alive=True)
    assert len(script.requests) == 3


async def test_too_many_requests_is_retried(agency: Callable[..., tuple[HttpCivilRegistry, Script]]) -> None:
    registry, script = agency(answer(429, error="slow down"), answer(match=False, alive=True))
    assert await check(registry) == IdentityAnswer(match=False, alive=True)
    assert len(script.requests) == 2


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_client_error_is_refused_without_retry(
    agency: Callable[..., tuple[HttpCivilRegistry, Script]], status: int
) -> None:
    registry, script = agency(answer(status, error="bad request"), answer(match=True, alive=True))
    with pytest.raises(AgencyRefused):
        await check(registry)
    assert len(script.requests) == 1


async def test_redirect_is_refused_not_followed(agency: Callable[..., tuple[HttpCivilRegistry, Script]]) -> None:
    def redirect(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"location": "http://elsewhere/identity"})

    registry, script = agency(redirect, answer(match=True, alive=True))
    with pytest.raises(AgencyRefused):
        await check(registry)
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "content",
    [
        b"<html>gateway</html>",
        b"",
        b"[1, 2, 3]",
        b'"match"',
        json.dumps({"match": True}).encode(),
        json.dumps({"match": True, "alive": True, "pad": "x" * MAX_ANSWER_BYTES}).encode(),
    ],
    ids=["html", "empty", "list", "string", "missing-key", "oversized"],
)
async def test_unusable_answer_is_refused_without_retry(
    agency: Callable[..., tuple[HttpCivilRegistry, Script]], content: bytes
) -> None:
    registry, script = agency(raw(200, content), answer(match=True, alive=True))
    with pytest.raises(AgencyRefused):
        await check(registry)
    assert len(script.requests) == 1


@pytest.mark.parametrize("value", ["false", "no", 0.5, [False]])
async def test_non_boolean_answer_is_refused(
    agency: Callable[..., tuple[HttpCivilRegistry, Script]], value: object
) -> None:
    registry, _ = agency(answer(match=value, alive=value))
    with pytest.raises(AgencyRefused):
        await check(registry)


async def test_answer_just_under_the_size_limit_is_accepted(
    agency: Callable[..., tuple[HttpCivilRegistry, Script]],
) -> None:
    body = json.dumps({"match": True, "alive": True, "pad": ""}).encode()
    padded = json.dumps({"match": True, "alive": True, "pad": "x" * (MAX_ANSWER_BYTES - len(body))}).encode()
    assert len(padded) == MAX_ANSWER_BYTES
    registry, _ = agency(raw(200, padded))
    assert await check(registry) == IdentityAnswer(match=True, alive=True)


async def test_dropped_connection_is_retried_then_unavailable(
    agency: Callable[..., tuple[HttpCivilRegistry, Script]],
) -> None:
    registry, script = agency(drop, max_attempts=4)
    with pytest.raises(AgencyUnavailable):
        await check(registry)
    assert len(script.requests) == 4


async def test_dropped_connection_then_answer_succeeds(
    agency: Callable[..., tuple[HttpCivilRegistry, Script]],
) -> None:
    registry, script = agency(drop, timeout, answer(match=True, alive=True))
    assert await check(registry) == IdentityAnswer(match=True, alive=True)
    assert len(script.requests) == 3


async def test_server_error_that_persists_is_unavailable_after_the_budget(
    agency: Callable[..., tuple[HttpCivilRegistry, Script]],
) -> None:
    registry, script = agency(answer(500, error="down"), max_attempts=3)
    with pytest.raises(AgencyUnavailable):
        await check(registry)
    assert len(script.requests) == 3


async def test_single_attempt_budget_means_no_retry(agency: Callable[..., tuple[HttpCivilRegistry, Script]]) -> None:
    registry, script = agency(answer(503), answer(match=True, alive=True), max_attempts=1)
    with pytest.raises(AgencyUnavailable):
        await check(registry)
    assert len(script.requests) == 1


# --- one inquiry ----------------------------------------------------------------------------------


IDENTITY = CatalogInquiry(id="identity", agency="civil-registry", check="identity")


async def test_matching_identity_passes() -> None:
    outcome = await run_inquiry(IDENTITY, submitted(), Agencies(civil_registry=FakeRegistry()))
    assert outcome == InquiryResult("identity", "civil-registry", InquiryOutcome.PASSED)


async def test_mismatching_birth_date_fails_with_a_reason() -> None:
    registry = FakeRegistry(IdentityAnswer(match=False, alive=True))
    outcome = await run_inquiry(IDENTITY, submitted(), Agencies(civil_registry=registry))
    assert outcome.outcome is InquiryOutcome.FAILED
    assert outcome.reason_en and "birth date" in outcome.reason_en
    assert outcome.reason_fa
    assert registry.calls == [(NATIONAL_ID, BIRTH_DATE)]


async def test_deceased_applicant_fails_with_a_reason() -> None:
    registry = FakeRegistry(IdentityAnswer(match=True, alive=False))
    outcome = await run_inquiry(IDENTITY, submitted(), Agencies(civil_registry=registry))
    assert outcome.outcome is InquiryOutcome.FAILED
    assert outcome.reason_en and "deceased" in outcome.reason_en


@pytest.mark.parametrize("error", [AgencyUnavailable("HTTP 503"), AgencyRefused("HTTP 400")])
async def test_agency_that_cannot_answer_is_unavailable_not_an_exception(error: Exception) -> None:
    outcome = await run_inquiry(IDENTITY, submitted(), Agencies(civil_registry=FakeRegistry(error=error)))
    assert outcome.outcome is InquiryOutcome.UNAVAILABLE
    assert outcome.reason_en and outcome.reason_fa


async def test_unsupported_inquiry_is_unavailable_without_calling_anyone() -> None:
    registry = FakeRegistry()
    unsupported = CatalogInquiry(id="property", agency="land-registry", check="ownership")
    outcome = await run_inquiry(unsupported, submitted(), Agencies(civil_registry=registry))
    assert outcome.outcome is InquiryOutcome.UNAVAILABLE
    assert registry.calls == []


# --- verifying a submission -----------------------------------------------------------------------


async def test_verification_of_a_matching_applicant_approves() -> None:
    event = submitted()
    completed, verification = await verify_submission(
        catalog=CATALOG, event=event, agencies=Agencies(civil_registry=FakeRegistry())
    )
    [inquiry] = completed
    assert inquiry.tracking_code == event.tracking_code
    assert inquiry.caused_by == event.event_id
    assert (inquiry.inquiry, inquiry.agency, inquiry.outcome) == ("identity", "civil-registry", InquiryOutcome.PASSED)
    assert verification.tracking_code == event.tracking_code
    assert verification.caused_by == event.event_id
    assert verification.next_step is NextStep.APPROVE
    assert verification.inquiries == {"identity": InquiryOutcome.PASSED}


async def test_verification_event_ids_derive_from_the_submission() -> None:
    event = submitted()
    completed, verification = await verify_submission(
        catalog=CATALOG, event=event, agencies=Agencies(civil_registry=FakeRegistry())
    )
    assert completed[0].event_id == derived_event_id(event.event_id, "InquiryCompleted", "identity")
    assert verification.event_id == derived_event_id(event.event_id, "VerificationCompleted")
    assert len({completed[0].event_id, verification.event_id, event.event_id}) == 3


async def test_redelivered_submission_yields_identical_events() -> None:
    event = submitted()
    agencies = Agencies(civil_registry=FakeRegistry(IdentityAnswer(match=False, alive=True)))
    first = await verify_submission(catalog=CATALOG, event=event, agencies=agencies)
    again = await verify_submission(catalog=CATALOG, event=parse_request_event(event_value(event)), agencies=agencies)  # type: ignore[arg-type]
    strip = {"occurred_at"}
    assert [e.model_dump(exclude=strip) for e in first[0]] == [e.model_dump(exclude=strip) for e in again[0]]
    assert first[1].model_dump(exclude=strip) == again[1].model_dump(exclude=strip)
    assert first[1].next_step is NextStep.NEEDS_CORRECTION


async def test_unavailable_registry_sends_verification_to_review() -> None:
    _, verification = await verify_submission(
        catalog=CATALOG,
        event=submitted(),
        agencies=Agencies(civil_registry=FakeRegistry(error=AgencyUnavailable("HTTP 503"))),
    )
    assert verification.next_step is NextStep.AGENCY_REVIEW
    assert verification.inquiries == {"identity": InquiryOutcome.UNAVAILABLE}


async def test_submission_for_a_service_not_in_the_catalog_is_a_permanent_error() -> None:
    registry = FakeRegistry()
    with pytest.raises(PermanentError):
        await verify_submission(
            catalog=CATALOG, event=submitted(service_id="no-such-service"), agencies=Agencies(civil_registry=registry)
        )
    assert registry.calls == []


async def test_every_inquiry_of_a_service_is_run() -> None:
    service = SERVICE.model_copy(
        update={
            "inquiries": [
                IDENTITY,
                CatalogInquiry(id="property", agency="land-registry", check="ownership"),
            ]
        }
    )
    completed, verification = await verify_submission(
        catalog=Catalog([service]), event=submitted(), agencies=Agencies(civil_registry=FakeRegistry())
    )
    assert [event.inquiry for event in completed] == ["identity", "property"]
    assert len({event.event_id for event in completed}) == 2
    assert verification.inquiries == {"identity": InquiryOutcome.PASSED, "property": InquiryOutcome.UNAVAILABLE}
    assert verification.next_step is NextStep.AGENCY_REVIEW


# --- the record handler, in memory -----------------------------------------------------------------


@pytest.fixture
def sessions(inquiry_sessions: Sessions) -> Sessions:
    return inquiry_sessions


async def test_submission_yields_inquiry_then_verification_keyed_by_tracking_code(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    event = submitted()
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(event)
    outcomes = w.requests.of_type("InquiryCompleted", "VerificationCompleted")
    assert [body["event_type"] for body, _ in outcomes] == ["InquiryCompleted", "VerificationCompleted"]
    assert all(key == event.tracking_code.encode() for _, key in outcomes)
    inquiry, verification = (parse_request_event(body) for body, _ in outcomes)
    assert isinstance(inquiry, InquiryCompleted)
    assert isinstance(verification, VerificationCompleted)
    assert inquiry.caused_by == verification.caused_by == event.event_id
    assert inquiry.outcome is InquiryOutcome.PASSED
    assert verification.next_step is NextStep.APPROVE
    assert w.registry.calls == [(NATIONAL_ID, BIRTH_DATE)]
    assert w.dead_letters.messages == []


async def test_redelivered_submission_after_its_events_were_published_publishes_nothing(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    event = submitted()
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(event, event)
    assert len(w.ids()) == 2
    assert len(w.registry.calls) == 1


@pytest.mark.parametrize("kind", ["InquiryCompleted", "VerificationCompleted"])
async def test_other_request_events_are_skipped_without_calling_the_agency(kind: str, sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    cause = submitted()
    other: InquiryCompleted | VerificationCompleted
    if kind == "InquiryCompleted":
        other = InquiryCompleted(
            tracking_code=cause.tracking_code,
            caused_by=cause.event_id,
            inquiry="identity",
            agency="civil-registry",
            outcome=InquiryOutcome.PASSED,
        )
    else:
        other = VerificationCompleted(
            tracking_code=cause.tracking_code, caused_by=cause.event_id, next_step=NextStep.APPROVE
        )
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(other)
    assert w.registry.calls == []
    assert w.requests.messages == []  # nothing published for it
    assert w.dead_letters.messages == []


async def test_event_type_added_after_this_build_is_skipped_not_dead_lettered(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    code = CODES.next_code()
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver({"event_type": "SomethingAddedLater", "tracking_code": code})
    assert w.registry.calls == []
    assert w.dead_letters.messages == []


async def test_submission_appended_after_accept_by_is_skipped(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    event = submitted()
    late = int(event.accept_by.timestamp() * 1000) + 1_000
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(event, timestamp_ms=late)
    assert w.registry.calls == []
    assert w.outcomes() == []


async def test_unavailable_agency_still_concludes_the_verification(sessions: Sessions) -> None:
    w = wired(FakeRegistry(error=AgencyUnavailable("HTTP 503")), sessions=sessions)
    event = submitted()
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(event)
    [(body, key)] = w.requests.of_type("VerificationCompleted")
    assert body["next_step"] == NextStep.AGENCY_REVIEW.value
    assert key == event.tracking_code.encode()
    # The service's agency gets it in its own inbox: identified by national ID, never the contact details.
    [(review, review_key)] = w.inbox.messages
    assert review["event_type"] == "ReviewRequested"
    assert review["caused_by"] == body["event_id"]
    assert review["event_id"] == derived_event_id(body["event_id"], "ReviewRequested")
    assert review["agency"] == "civil-registry"
    assert review["applicant"] == {"national_id": event.applicant.national_id, "birth_date": None}
    assert review["inquiries"] == {"identity": "unavailable"}
    assert event.applicant.mobile not in json.dumps(review)
    assert review_key == event.tracking_code.encode()


async def test_approved_submission_sends_nothing_to_the_agency_inbox(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(submitted())
    [(body, _)] = w.requests.of_type("VerificationCompleted")
    assert body["next_step"] == NextStep.APPROVE.value
    assert w.inbox.messages == []


async def test_submission_for_an_unknown_service_is_dead_lettered(sessions: Sessions) -> None:
    w = wired(sessions=sessions)
    event = submitted(service_id="no-such-service")
    async with TestKafkaBroker(w.broker):
        await w.feed.deliver(event)
    assert w.registry.calls == []
    assert w.outcomes() == []
    [(body, key)] = w.dead_letters.messages
    assert body["event_id"] == event.event_id
    assert key == event.tracking_code.encode()
