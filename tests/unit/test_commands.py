"""intake's citizen and agency commands through its HTTP API, in memory: no lifespan, Kafka and tracking faked."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from services.intake.adapters import TrackingClient
from services.intake.adapters_agency_keys import AgencyKeys, hash_key
from services.intake.app import create_app
from services.intake.service import Intake
from services.intake.settings import DEV_AGENCY_KEYS_FILE, DEV_TRACKING_KEY, IntakeSettings
from shared.domain.digits import to_persian_digits
from shared.domain.identity import make_valid_national_id
from shared.domain.state_machine import RequestState
from shared.domain.tracking_code import TrackingCodeGenerator, format_for_display
from shared.events import (
    ComplaintFiled,
    ComplaintResolved,
    CorrectionSubmitted,
    Decision,
    RequestCancelled,
    RequestDecided,
    ResultDelivered,
)
from tests.asgi import asgi_client
from tests.problems import assert_problem
from tests.unit.intake_fakes import FakePublish

SERVICE_ID = "birth-certificate-duplicate"
AGENCY = "civil-registry"
AGENCY_KEY = "dev-key-civil-registry"
NATIONAL_ID = make_valid_national_id("001234567")
OTHER_NATIONAL_ID = make_valid_national_id("001234568")
CODES = TrackingCodeGenerator(key=b"k" * 32, replica_id=2)

TRACKING_URL = "http://tracking.test"
SHA = "a" * 64


# --- fakes ----------------------------------------------------------------------------------------


@dataclass
class Stored:
    """A request as tracking's projection holds it."""

    national_id: str
    status: RequestState
    sla_breached: bool = False
    complaint_open: bool = False
    service_id: str = SERVICE_ID
    agency: str = AGENCY
    open_complaint_id: str | None = None


@dataclass
class FakeTracking:
    """tracking over httpx.MockTransport: its lookup (404 for an unknown code or a wrong national ID) and its
    internal facts route (404 for an unknown code; `behind` holds earlier views of a code, read first)."""

    requests: dict[str, Stored] = field(default_factory=dict)
    behind: dict[str, list[Stored | None]] = field(default_factory=dict)
    fact_calls: list[str] = field(default_factory=list)
    malformed: bool = False
    down: bool = False
    answer_status: int | None = None
    delay_s: float = 0.0
    calls: list[dict[str, str]] = field(default_factory=list)
    forwarded_for: list[str | None] = field(default_factory=list)
    throttled: bool = False

    def add(self, status: RequestState, **flags: Any) -> str:
        code = CODES.next_code()
        self.requests[code] = Stored(NATIONAL_ID, status, **flags)
        return code

    async def facts(self, request: httpx.Request) -> httpx.Response:
        code = request.url.path.removeprefix("/internal/v1/requests/")
        self.fact_calls.append(code)
        if request.headers.get("x-internal-key") != DEV_TRACKING_KEY:
            return httpx.Response(401, json={"status": 401})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.answer_status is not None:
            return httpx.Response(self.answer_status, json={"status": self.answer_status})
        if self.malformed:
            return httpx.Response(200, json={"tracking_code": code, "status": "SOMEWHERE"})
        earlier = self.behind.get(code)
        stored = earlier.pop(0) if earlier else self.requests.get(code)
        if stored is None:
            return httpx.Response(404, json={"status": 404})
        return httpx.Response(
            200,
            json={
                "tracking_code": code,
                "service_id": stored.service_id,
                "catalog_version": 1,
                "agency": stored.agency,
                "status": stored.status.value,
                "sla_breached": stored.sla_breached,
                "complaint_open": stored.complaint_open,
                "open_complaint_id": stored.open_complaint_id,
            },
        )

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.startswith("/internal/v1/requests/"):
            return await self.facts(request)
        assert request.method == "POST"
        assert request.url.path == "/api/v1/tracking/lookup"
        query = json.loads(request.content)
        self.calls.append(query)
        self.forwarded_for.append(request.headers.get("x-forwarded-for"))
        if self.throttled:
            return httpx.Response(429, headers={"Retry-After": "17"}, json={"status": 429})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.answer_status is not None:
            return httpx.Response(self.answer_status, json={"status": self.answer_status})
        stored = self.requests.get(query["tracking_code"])
        if stored is None or stored.national_id != query["national_id"]:
            return httpx.Response(404, json={"status": 404, "title": "not found"})
        now = datetime.now(UTC).isoformat()
        return httpx.Response(
            200,
            json={
                "tracking_code": query["tracking_code"],
                "service_id": stored.service_id,
                "catalog_version": 1,
                "status": stored.status.value,
                "sla_breached": stored.sla_breached,
                "complaint_open": stored.complaint_open,
                "waiting_for_fa": None,
                "waiting_for_en": None,
                "submitted_at": now,
                "updated_at": now,
                "timeline": [],
            },
        )


def build_app(tracking: FakeTracking, publish: FakePublish, *, connected: bool = True, **settings: Any) -> FastAPI:
    # Short waits for a projection that is behind: the unit tests read it every 20 ms for 200 ms at most.
    settings = {"command_settle_s": 0.2, "command_settle_poll_s": 0.02, **settings}
    app = create_app(IntakeSettings(**settings), tracer_provider=TracerProvider())
    if connected:
        app.state.bus.connected.set()
    intake: Intake = app.state.intake
    intake.publish_command = publish
    intake.tracking = TrackingClient(
        TRACKING_URL,
        timeout_s=settings.get("tracking_timeout_s", 2.0),
        internal_key=DEV_TRACKING_KEY,
        client=httpx.AsyncClient(transport=httpx.MockTransport(tracking.handler)),
    )
    return app


@pytest.fixture
def tracking() -> FakeTracking:
    return FakeTracking()


@pytest.fixture
def app(tracking: FakeTracking, publish: FakePublish) -> FastAPI:
    return build_app(tracking, publish)


def citizen(code: str, command: str) -> str:
    return f"/api/v1/requests/{code}/{command}"


async def cancel(client: httpx.AsyncClient, code: str) -> httpx.Response:
    """The citizen cancels the request, giving no reason."""
    return await client.post(citizen(code, "cancellation"), json={"national_id": NATIONAL_ID})


def agency(code: str, command: str) -> str:
    return f"/api/v1/agency/requests/{code}/{command}"


KEY = {"X-Agency-Key": AGENCY_KEY}


# --- the citizen's commands: accepted -------------------------------------------------------------


async def test_correction_of_a_request_that_needs_one_is_accepted(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.NEEDS_CORRECTION)
    document = {"kind": "photo", "sha256": SHA, "media_type": "image/jpeg", "size_bytes": 1234}
    response = await client.post(
        citizen(code, "correction"),
        json={"national_id": NATIONAL_ID, "fields": {"reason": "  worn out "}, "documents": [document]},
    )
    assert response.status_code == 202, response.text
    [event] = publish.published
    assert isinstance(event, CorrectionSubmitted)
    assert event.tracking_code == code
    assert event.fields == {"reason": "worn out"}
    assert [doc.model_dump() for doc in event.documents] == [document]
    assert response.json() == {
        "tracking_code": code,
        "tracking_code_display": format_for_display(code),
        "event_id": event.event_id,
        "event_type": "CorrectionSubmitted",
        "complaint_id": None,
    }
    assert tracking.calls == [{"tracking_code": code, "national_id": NATIONAL_ID}]
    assert NATIONAL_ID not in event.model_dump_json()


async def test_cancellation_before_a_decision_is_accepted(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.IN_REVIEW)
    response = await client.post(
        citizen(code, "cancellation"), json={"national_id": NATIONAL_ID, "reason": "دیگر لازم نیست"}
    )
    assert response.status_code == 202, response.text
    [event] = publish.published
    assert isinstance(event, RequestCancelled)
    assert (event.tracking_code, event.by, event.reason_fa, event.reason_en) == (
        code,
        "citizen",
        "دیگر لازم نیست",
        None,
    )
    assert response.json()["event_type"] == "RequestCancelled"
    assert NATIONAL_ID not in event.model_dump_json()


async def test_cancellation_without_a_reason_is_accepted(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.SUBMITTED)
    response = await cancel(client, code)
    assert response.status_code == 202, response.text
    [event] = publish.published
    assert (event.reason_fa, event.reason_en) == (None, None)


async def test_complaint_after_a_rejection_is_accepted(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.REJECTED)
    response = await client.post(citizen(code, "complaint"), json={"national_id": NATIONAL_ID, "text": " unfair "})
    assert response.status_code == 202, response.text
    [event] = publish.published
    assert isinstance(event, ComplaintFiled)
    assert event.text == "unfair"
    assert response.json()["complaint_id"] == event.complaint_id
    assert NATIONAL_ID not in event.model_dump_json()


async def test_complaint_before_a_decision_is_accepted_once_the_sla_is_breached(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.IN_REVIEW, sla_breached=True)
    response = await client.post(citizen(code, "complaint"), json={"national_id": NATIONAL_ID, "text": "too slow"})
    assert response.status_code == 202, response.text
    assert len(publish.published) == 1


async def test_tracking_code_typed_in_persian_digits_with_hyphens_is_understood(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.SUBMITTED)
    typed = to_persian_digits(format_for_display(code))
    response = await client.post(citizen(typed, "cancellation"), json={"national_id": to_persian_digits(NATIONAL_ID)})
    assert response.status_code == 202, response.text
    assert publish.published[0].tracking_code == code
    assert tracking.calls == [{"tracking_code": code, "national_id": NATIONAL_ID}]


# --- the citizen's commands: refused --------------------------------------------------------------


async def test_wrong_national_id_is_the_same_404_as_an_unknown_or_malformed_code(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.SUBMITTED)
    unknown = CODES.next_code()
    malformed = code[:-1] + str((int(code[-1]) + 1) % 10)
    answers = [
        await client.post(citizen(code, "cancellation"), json={"national_id": OTHER_NATIONAL_ID}),
        await client.post(citizen(unknown, "cancellation"), json={"national_id": NATIONAL_ID}),
        await client.post(citizen(malformed, "cancellation"), json={"national_id": NATIONAL_ID}),
        await client.post(citizen(code, "cancellation"), json={"national_id": "12345"}),
    ]
    bodies = []
    for response in answers:
        problem = assert_problem(response, 404)
        assert NATIONAL_ID not in response.text and OTHER_NATIONAL_ID not in response.text
        problem.pop("instance")  # the path, which holds the code the caller typed
        bodies.append(problem)
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["type"].endswith("/request-not-found")
    assert [call["tracking_code"] for call in tracking.calls] == [code, unknown]  # no lookup for a non-code
    assert publish.published == []


@pytest.mark.parametrize(
    ("state", "title", "title_fa", "detail_fa"),
    [
        (
            RequestState.APPROVED,
            "The request has already been decided and can no longer be cancelled.",
            "دربارهٔ این درخواست پیش‌تر تصمیم گرفته شده و دیگر نمی‌توان آن را لغو کرد.",
            "وضعیت کنونی درخواست: تأییدشده",
        ),
        (
            RequestState.CANCELLED,
            "The request has already been cancelled.",
            "این درخواست پیش‌تر لغو شده است.",
            "وضعیت کنونی درخواست: لغوشده",
        ),
    ],
    ids=["after-approval", "already-cancelled"],
)
async def test_cancellation_the_state_refuses_is_a_409_saying_why_in_both_languages(
    client: httpx.AsyncClient,
    tracking: FakeTracking,
    publish: FakePublish,
    state: RequestState,
    title: str,
    title_fa: str,
    detail_fa: str,
) -> None:
    code = tracking.add(state)
    problem = assert_problem(await cancel(client, code), 409, slug="command-not-allowed")
    assert (problem["title"], problem["title_fa"], problem["detail_fa"]) == (title, title_fa, detail_fa)
    assert state.value in problem["detail"]
    assert publish.published == []


@pytest.mark.parametrize(
    ("state", "complaint_open", "command", "payload", "said"),
    [
        (RequestState.IN_REVIEW, False, "complaint", {"text": "why?"}, "decided"),
        (RequestState.REJECTED, True, "complaint", {"text": "again"}, "already open"),
        (RequestState.IN_REVIEW, False, "correction", {"fields": {"reason": "x"}}, "does not need a correction"),
    ],
    ids=["complaint-before-a-decision", "second-complaint-while-one-is-open", "correction-when-none-is-needed"],
)
async def test_a_command_the_state_does_not_allow_is_a_409_saying_why(
    client: httpx.AsyncClient,
    tracking: FakeTracking,
    publish: FakePublish,
    state: RequestState,
    complaint_open: bool,
    command: str,
    payload: dict[str, Any],
    said: str,
) -> None:
    code = tracking.add(state, complaint_open=complaint_open)
    response = await client.post(citizen(code, command), json={"national_id": NATIONAL_ID, **payload})
    problem = assert_problem(response, 409)
    assert said in problem["title"]
    assert publish.published == []


async def test_correction_of_an_unknown_field_is_a_422_naming_it(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.NEEDS_CORRECTION)
    response = await client.post(
        citizen(code, "correction"), json={"national_id": NATIONAL_ID, "fields": {"colour": "blue", "reason": " "}}
    )
    problem = assert_problem(response, 422)
    assert {(error["field"], error["code"]) for error in problem["errors"]} == {
        ("fields.colour", "unknown_field"),
        ("fields.reason", "required"),
    }
    assert publish.published == []


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        ("correction", {"national_id": NATIONAL_ID}),
        ("correction", {"national_id": NATIONAL_ID, "fields": {"reason": "x"}, "extra": 1}),
        ("complaint", {"national_id": NATIONAL_ID, "text": "   "}),
        ("complaint", {"national_id": NATIONAL_ID, "text": "x" * 2001}),
        ("complaint", {"national_id": NATIONAL_ID}),
        ("cancellation", {}),
    ],
    ids=["empty-correction", "extra-key", "blank-complaint", "long-complaint", "no-text", "no-national-id"],
)
async def test_malformed_citizen_command_is_a_422_problem(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish, command: str, payload: dict[str, Any]
) -> None:
    code = tracking.add(RequestState.REJECTED)
    problem = assert_problem(await client.post(citizen(code, command), json=payload), 422)
    assert problem["errors"]
    assert tracking.calls == [] and publish.published == []


# --- the citizen's commands: dependencies down ----------------------------------------------------


async def test_tracking_down_is_a_503_with_retry_after(tracking: FakeTracking, publish: FakePublish) -> None:
    code = tracking.add(RequestState.SUBMITTED)
    tracking.down = True
    async with asgi_client(build_app(tracking, publish), "http://intake") as client:
        response = await cancel(client, code)
    problem = assert_problem(response, 503)
    assert problem["type"].endswith("/tracking-unavailable")
    assert response.headers["retry-after"] == "5"
    assert publish.published == []


@pytest.mark.parametrize("status", [500, 502, 422])
async def test_tracking_error_answer_is_a_503(tracking: FakeTracking, publish: FakePublish, status: int) -> None:
    code = tracking.add(RequestState.SUBMITTED)
    tracking.answer_status = status
    async with asgi_client(build_app(tracking, publish), "http://intake") as client:
        response = await cancel(client, code)
    assert_problem(response, 503)
    assert publish.published == []


async def test_lookup_is_made_under_the_citizens_address_and_its_throttling_is_theirs(
    tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.SUBMITTED)
    tracking.throttled = True
    async with asgi_client(build_app(tracking, publish), "http://intake", client=("203.0.113.7", 4711)) as client:
        response = await cancel(client, code)
    assert_problem(response, 429)
    assert response.headers["retry-after"] == "17"
    assert tracking.forwarded_for == ["203.0.113.7"]
    assert publish.published == []


async def test_slow_tracking_is_a_503_in_bounded_time(tracking: FakeTracking, publish: FakePublish) -> None:
    code = tracking.add(RequestState.SUBMITTED)
    tracking.delay_s = 30
    app = build_app(tracking, publish, tracking_timeout_s=0.05)
    async with asgi_client(app, "http://intake") as client:
        async with asyncio.timeout(5):
            response = await cancel(client, code)
    assert_problem(response, 503)


async def test_kafka_publish_failure_is_a_503_with_retry_after(tracking: FakeTracking) -> None:
    code = tracking.add(RequestState.SUBMITTED)
    publish = FakePublish(error=ConnectionError("kafka is down"))
    async with asgi_client(build_app(tracking, publish), "http://intake") as client:
        response = await cancel(client, code)
    problem = assert_problem(response, 503)
    assert problem["type"].endswith("/bus-unavailable")
    assert response.headers["retry-after"] == "5"
    assert "kafka is down" not in response.text
    assert len(publish.published) == 1


async def test_command_appended_after_accept_by_is_a_503(tracking: FakeTracking) -> None:
    code = tracking.add(RequestState.REJECTED)
    publish = FakePublish(late_by_ms=1000)
    async with asgi_client(build_app(tracking, publish), "http://intake") as client:
        response = await client.post(citizen(code, "complaint"), json={"national_id": NATIONAL_ID, "text": "late"})
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "5"


async def test_disconnected_bus_is_a_503_without_asking_tracking(tracking: FakeTracking, publish: FakePublish) -> None:
    code = tracking.add(RequestState.SUBMITTED)
    app = build_app(tracking, publish, connected=False)
    async with asgi_client(app, "http://intake") as client:
        response = await cancel(client, code)
        agency_response = await client.post(
            agency(code, "decision"), headers=KEY, json={"service_id": SERVICE_ID, "decision": "approve"}
        )
    assert_problem(response, 503)
    assert_problem(agency_response, 503)
    assert tracking.calls == [] and tracking.fact_calls == [] and publish.published == []


# --- the agency's commands ------------------------------------------------------------------------


def reject(**overrides: Any) -> dict[str, Any]:
    return {
        "service_id": SERVICE_ID,
        "decision": "reject",
        "reason_fa": "مدارک کافی نیست",
        "reason_en": "The documents are not sufficient",
        "legal_basis": "Civil Registration Act, art. 20",
        **overrides,
    }


async def test_agency_command_without_a_key_is_a_401(client: httpx.AsyncClient, publish: FakePublish) -> None:
    code = CODES.next_code()
    response = await client.post(agency(code, "decision"), json=reject())
    problem = assert_problem(response, 401)
    assert problem["type"].endswith("/agency-unauthenticated")
    assert "www-authenticate" in response.headers
    assert publish.published == []


@pytest.mark.parametrize("key", ["dev-key-nobody", "", hashlib.sha256(AGENCY_KEY.encode()).hexdigest()])
async def test_agency_command_with_a_wrong_key_is_a_401(
    client: httpx.AsyncClient, publish: FakePublish, key: str
) -> None:
    # The stored hash itself is not a key: a leaked keys file opens nothing.
    response = await client.post(agency(CODES.next_code(), "decision"), headers={"X-Agency-Key": key}, json=reject())
    assert_problem(response, 401)
    assert publish.published == []


async def test_missing_key_is_a_401_even_with_a_malformed_body(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post(agency(CODES.next_code(), "decision"), json={"decision": "maybe"}), 401)


async def test_agency_command_for_a_service_out_of_the_keys_scope_is_a_403(
    client: httpx.AsyncClient, publish: FakePublish
) -> None:
    response = await client.post(
        agency(CODES.next_code(), "decision"), headers=KEY, json=reject(service_id="tax-clearance-certificate")
    )
    problem = assert_problem(response, 403)
    assert problem["type"].endswith("/agency-out-of-scope")
    assert publish.published == []


async def test_rejection_without_a_legal_basis_is_a_422_naming_it(
    client: httpx.AsyncClient, publish: FakePublish
) -> None:
    payload = reject()
    del payload["legal_basis"]
    problem = assert_problem(await client.post(agency(CODES.next_code(), "decision"), headers=KEY, json=payload), 422)
    assert [error["field"] for error in problem["errors"]] == ["legal_basis"]
    blank = assert_problem(
        await client.post(agency(CODES.next_code(), "decision"), headers=KEY, json=reject(legal_basis="  ")), 422
    )
    assert [error["field"] for error in blank["errors"]] == ["legal_basis"]
    assert publish.published == []


async def test_needs_correction_without_reasons_is_a_422(client: httpx.AsyncClient) -> None:
    payload = {"service_id": SERVICE_ID, "decision": "needs_correction", "reason_fa": "عکس ناخواناست"}
    problem = assert_problem(await client.post(agency(CODES.next_code(), "decision"), headers=KEY, json=payload), 422)
    assert [error["field"] for error in problem["errors"]] == ["reason_en"]


async def test_decision_is_accepted_and_carries_the_keys_agency(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.IN_REVIEW)
    response = await client.post(agency(format_for_display(code), "decision"), headers=KEY, json=reject())
    assert response.status_code == 202, response.text
    [event] = publish.published
    assert isinstance(event, RequestDecided)
    assert (event.tracking_code, event.agency, event.service_id) == (code, AGENCY, SERVICE_ID)
    assert event.decision is Decision.REJECT
    assert event.legal_basis == "Civil Registration Act, art. 20"
    assert response.json()["event_id"] == event.event_id
    # Checked against the request's facts only: an agency never sees, nor asks with, the applicant's data.
    assert tracking.calls == [] and tracking.fact_calls == [code]


async def test_approval_needs_no_reason(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.IN_REVIEW)
    response = await client.post(
        agency(code, "decision"), headers=KEY, json={"service_id": SERVICE_ID, "decision": "approve"}
    )
    assert response.status_code == 202, response.text
    assert publish.published[0].decision is Decision.APPROVE


async def test_agency_command_on_a_malformed_code_is_a_404(client: httpx.AsyncClient, publish: FakePublish) -> None:
    assert_problem(await client.post(agency("12345", "decision"), headers=KEY, json=reject()), 404)
    assert publish.published == []


async def test_result_as_a_link_is_accepted(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.APPROVED)
    payload = {
        "service_id": SERVICE_ID,
        "result": {"url": "https://civil-registry.example.ir/results/abc"},
        "summary_fa": "شناسنامه صادر شد",
        "summary_en": "The certificate was issued",
    }
    response = await client.post(agency(code, "result"), headers=KEY, json=payload)
    assert response.status_code == 202, response.text
    [event] = publish.published
    assert isinstance(event, ResultDelivered)
    assert (event.agency, event.result_url, event.result) == (
        AGENCY,
        "https://civil-registry.example.ir/results/abc",
        None,
    )


async def test_result_as_a_document_is_accepted(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.APPROVED)
    payload = {
        "service_id": SERVICE_ID,
        "result": {"document_id": SHA, "media_type": "application/pdf", "size_bytes": 2048},
        "summary_fa": "شناسنامه صادر شد",
        "summary_en": "The certificate was issued",
    }
    response = await client.post(agency(code, "result"), headers=KEY, json=payload)
    assert response.status_code == 202, response.text
    [event] = publish.published
    assert event.result is not None and event.result_url is None
    assert (event.result.kind, event.result.sha256, event.result.size_bytes) == ("result", SHA, 2048)


@pytest.mark.parametrize(
    "result",
    [{}, {"document_id": SHA, "url": "https://x.example.ir/r"}, {"document_id": SHA}, {"url": "not a url"}],
    ids=["neither", "both", "document-without-type", "bad-url"],
)
async def test_malformed_result_is_a_422(client: httpx.AsyncClient, publish: FakePublish, result: Any) -> None:
    payload = {"service_id": SERVICE_ID, "result": result, "summary_fa": "خلاصه", "summary_en": "Summary"}
    assert_problem(await client.post(agency(CODES.next_code(), "result"), headers=KEY, json=payload), 422)
    assert publish.published == []


COMPLAINT_ID = "5b3f0c8e-8a57-4d8e-9a3c-3f1e9d1c2b4a"
RESOLUTION = {"service_id": SERVICE_ID, "resolution_fa": "بررسی و اصلاح شد", "resolution_en": "Reviewed and fixed"}


async def test_complaint_resolution_is_accepted(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    complaint_id = COMPLAINT_ID
    code = tracking.add(RequestState.REJECTED, complaint_open=True, open_complaint_id=complaint_id)
    response = await client.post(agency(code, f"complaints/{complaint_id}/resolution"), headers=KEY, json=RESOLUTION)
    assert response.status_code == 202, response.text
    [event] = publish.published
    assert isinstance(event, ComplaintResolved)
    assert (event.complaint_id, event.agency, event.service_id) == (complaint_id, AGENCY, SERVICE_ID)
    assert response.json()["complaint_id"] == complaint_id


async def test_agency_publish_failure_is_a_503_with_retry_after(tracking: FakeTracking) -> None:
    publish = FakePublish(error=TimeoutError())
    code = tracking.add(RequestState.IN_REVIEW)
    async with asgi_client(build_app(tracking, publish), "http://intake") as client:
        response = await client.post(agency(code, "decision"), headers=KEY, json=reject())
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "5"


# --- the agency's commands: checked against the request before they are accepted --------------------

APPROVE = {"service_id": SERVICE_ID, "decision": "approve"}
LINK_RESULT = {
    "service_id": SERVICE_ID,
    "result": {"url": "https://civil-registry.example.ir/results/abc"},
    "summary_fa": "شناسنامه صادر شد",
    "summary_en": "The certificate was issued",
}


def refused_with(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """A problem+json refusal with its reason in Persian (Persian letters, no Latin words) and English."""
    problem = assert_problem(response, status, slug=slug)
    assert any("\u0600" <= char <= "\u06ff" for char in problem["title_fa"])
    assert not any("a" <= char.lower() <= "z" for char in problem["title_fa"] + (problem["detail_fa"] or ""))
    return problem


async def test_decision_on_an_unknown_request_is_a_404_after_a_bounded_wait(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = CODES.next_code()
    started = asyncio.get_running_loop().time()
    problem = refused_with(
        await client.post(agency(code, "decision"), headers=KEY, json=APPROVE), 404, "request-not-found"
    )
    waited = asyncio.get_running_loop().time() - started
    assert problem["title"] == "No request has this tracking code."
    assert len(tracking.fact_calls) > 2 and 0.2 <= waited < 2  # read again for 200 ms (the tests' setting), no more
    assert publish.published == []


async def test_a_request_the_projection_has_not_folded_yet_is_found_on_a_later_reading(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.IN_REVIEW)
    verifying = Stored(NATIONAL_ID, RequestState.VERIFYING)
    tracking.behind[code] = [None, verifying, verifying]
    response = await client.post(agency(code, "decision"), headers=KEY, json=APPROVE)
    assert response.status_code == 202, response.text
    assert tracking.fact_calls == [code] * 4
    assert [type(event) for event in publish.published] == [RequestDecided]


async def test_decision_on_another_agencys_request_is_a_403_at_once(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.IN_REVIEW, agency="judiciary", service_id="no-criminal-record-certificate")
    response = await client.post(agency(code, "decision"), headers=KEY, json=reject())
    problem = refused_with(response, 403, "not-your-request")
    assert problem["title"] == "This request is not your agency's to act on."
    assert tracking.fact_calls == [code]  # a refusal that stands is not read again
    assert publish.published == []


async def test_decision_naming_another_service_of_the_agency_is_a_409(
    tmp_path: Path, tracking: FakeTracking, publish: FakePublish
) -> None:
    keys_file = tmp_path / "keys.yaml"
    grant = {"agency": AGENCY, "services": [SERVICE_ID, "birth-certificate-first"]}
    keys_file.write_text(yaml.safe_dump({hash_key("two-services"): grant}))
    code = tracking.add(RequestState.IN_REVIEW)
    app = build_app(tracking, publish, agency_keys_file=keys_file)
    async with asgi_client(app, "http://intake") as client:
        response = await client.post(
            agency(code, "decision"),
            headers={"X-Agency-Key": "two-services"},
            json={**APPROVE, "service_id": "birth-certificate-first"},
        )
    problem = refused_with(response, 409, "service-mismatch")
    assert SERVICE_ID in problem["title"]
    assert publish.published == []


@pytest.mark.parametrize(
    ("state", "title_en", "state_fa"),
    [
        (RequestState.APPROVED, "The request has already been decided.", "تأییدشده"),
        (RequestState.REJECTED, "The request has already been decided.", "ردشده"),
        (RequestState.CANCELLED, "The request has been cancelled.", "لغوشده"),
        (RequestState.DELIVERED, "The request has already been decided.", "تحویل‌شده"),
    ],
)
async def test_decision_on_a_decided_or_cancelled_request_is_a_409_naming_its_state_at_once(
    client: httpx.AsyncClient,
    tracking: FakeTracking,
    publish: FakePublish,
    state: RequestState,
    title_en: str,
    state_fa: str,
) -> None:
    code = tracking.add(state)
    problem = refused_with(
        await client.post(agency(code, "decision"), headers=KEY, json=reject()), 409, "command-not-allowed"
    )
    assert problem["title"] == title_en
    assert problem["detail"] == f"The request is {state.value}."
    assert problem["detail_fa"] == f"وضعیت کنونی درخواست: {state_fa}"
    assert tracking.fact_calls == [code]
    assert publish.published == []


async def test_decision_on_a_request_still_verifying_is_a_409_once_the_wait_is_over(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.VERIFYING)
    problem = refused_with(
        await client.post(agency(code, "decision"), headers=KEY, json=APPROVE), 409, "command-not-allowed"
    )
    assert problem["title"] == "The request is not waiting for the agency's review."
    assert len(tracking.fact_calls) > 2
    assert publish.published == []


async def test_a_second_decision_is_refused_once_the_first_is_applied(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.IN_REVIEW)
    assert (await client.post(agency(code, "decision"), headers=KEY, json=APPROVE)).status_code == 202
    tracking.requests[code].status = RequestState.APPROVED  # tracking folded the first decision
    replay = await client.post(agency(code, "decision"), headers=KEY, json=APPROVE)
    assert refused_with(replay, 409, "command-not-allowed")["detail"] == "The request is APPROVED."
    assert len(publish.published) == 1


@pytest.mark.parametrize(
    ("state", "title_en"),
    [
        (RequestState.DELIVERED, "The result of this request has already been delivered."),
        (RequestState.REJECTED, "The request was rejected; it has no result to deliver."),
        (RequestState.CANCELLED, "The request has been cancelled."),
        (RequestState.IN_REVIEW, "The request has not been approved yet."),
    ],
)
async def test_result_when_the_request_is_not_approved_is_a_409(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish, state: RequestState, title_en: str
) -> None:
    code = tracking.add(state)
    response = await client.post(agency(code, "result"), headers=KEY, json=LINK_RESULT)
    assert refused_with(response, 409, "command-not-allowed")["title"] == title_en
    assert publish.published == []


async def test_resolution_of_another_complaint_id_is_a_409_and_publishes_nothing(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.REJECTED, complaint_open=True, open_complaint_id=COMPLAINT_ID)
    wrong = "00000000-0000-0000-0000-000000000000"
    response = await client.post(agency(code, f"complaints/{wrong}/resolution"), headers=KEY, json=RESOLUTION)
    problem = refused_with(response, 409, "complaint-not-open")
    assert problem["title"] == "The complaint id is not the id of the request's open complaint."
    assert tracking.fact_calls == [code]
    assert publish.published == []


async def test_resolution_when_no_complaint_is_open_is_a_409(
    client: httpx.AsyncClient, tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.REJECTED)
    response = await client.post(agency(code, f"complaints/{COMPLAINT_ID}/resolution"), headers=KEY, json=RESOLUTION)
    assert refused_with(response, 409, "command-not-allowed")["title"] == "No complaint about this request is open."
    assert publish.published == []


@pytest.mark.parametrize("failure", ["down", "5xx", "malformed", "wrong-key"])
async def test_tracking_unable_to_answer_an_agency_command_is_a_503_and_publishes_nothing(
    tracking: FakeTracking, publish: FakePublish, failure: str
) -> None:
    code = tracking.add(RequestState.IN_REVIEW)
    tracking.down = failure == "down"
    tracking.answer_status = 502 if failure == "5xx" else None
    tracking.malformed = failure == "malformed"
    app = build_app(tracking, publish)
    if failure == "wrong-key":
        app.state.intake.tracking.internal_key = "not-trackings-key"
    async with asgi_client(app, "http://intake") as client:
        response = await client.post(agency(code, "decision"), headers=KEY, json=APPROVE)
    problem = assert_problem(response, 503, slug="tracking-unavailable")
    assert response.headers["retry-after"] == "5"
    assert problem["title_fa"]
    assert publish.published == []


async def test_slow_tracking_is_a_503_for_an_agency_command_in_bounded_time(
    tracking: FakeTracking, publish: FakePublish
) -> None:
    code = tracking.add(RequestState.IN_REVIEW)
    tracking.delay_s = 30
    app = build_app(tracking, publish, tracking_timeout_s=0.05)
    async with asgi_client(app, "http://intake") as client:
        async with asyncio.timeout(5):
            response = await client.post(agency(code, "decision"), headers=KEY, json=APPROVE)
    assert_problem(response, 503)
    assert publish.published == []


def test_the_dev_tracking_key_is_refused_outside_local_and_test(tmp_path: Path) -> None:
    production = {
        "deployment": {"deployment_environment": "production"},
        "tracking_code_key": "p" * 32,
        "rate_limit_key": "q" * 32,
        "agency_keys_file": tmp_path / "keys.yaml",
    }
    with pytest.raises(ValueError, match="INTAKE_TRACKING_KEY"):
        IntakeSettings.model_validate(production)
    IntakeSettings.model_validate({**production, "tracking_key": "r" * 32})


# --- the agency keys ------------------------------------------------------------------------------


def test_dev_keys_file_holds_only_hashes_and_names_the_plaintext_in_its_first_comment() -> None:
    text = DEV_AGENCY_KEYS_FILE.read_text(encoding="utf-8")
    first, *rest = text.splitlines()
    assert first.startswith("#") and AGENCY_KEY in first
    data_lines = [line.split("#")[0] for line in rest]
    assert not any("dev-key-" in line for line in data_lines)
    assert hash_key(AGENCY_KEY) in yaml.safe_load(text)


def test_every_scoped_service_belongs_to_its_keys_agency(app: FastAPI) -> None:
    keys = AgencyKeys.load(DEV_AGENCY_KEYS_FILE)
    catalog = app.state.intake.catalog
    agencies = {grant.agency for grant in keys.grants.values()}
    assert len(agencies) == len(keys.grants)  # one dev key per agency
    for grant in keys.grants.values():
        for service_id in grant.services:
            service = catalog.get(service_id)
            assert service is not None, service_id
            assert service.agency == grant.agency, service_id
    offering = {service.agency for service in catalog.all()}
    assert offering <= agencies


def test_keys_file_from_settings_is_used(tmp_path: Path, tracking: FakeTracking, publish: FakePublish) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(yaml.safe_dump({hash_key("s3cret-token"): {"agency": "tax", "services": ["tax-x"]}}))
    app = build_app(tracking, publish, agency_keys_file=keys_file)
    grant = app.state.intake.agency_keys.authenticate("s3cret-token")
    assert grant is not None and (grant.agency, grant.services) == ("tax", frozenset({"tax-x"}))
    assert app.state.intake.agency_keys.authenticate(AGENCY_KEY) is None


def test_keys_file_with_a_malformed_hash_fails_the_start(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(yaml.safe_dump({"plaintext-key": {"agency": "tax", "services": []}}))
    with pytest.raises(ValueError):
        AgencyKeys.load(keys_file)


def test_dev_keys_file_is_refused_outside_local_and_test(tmp_path: Path) -> None:
    secrets = {"tracking_code_key": "p" * 32, "rate_limit_key": "q" * 32, "tracking_key": "r" * 32}
    production = {"deployment": {"deployment_environment": "production"}, **secrets}
    with pytest.raises(ValueError, match="INTAKE_AGENCY_KEYS_FILE"):
        IntakeSettings.model_validate(production)
    IntakeSettings.model_validate({**production, "agency_keys_file": tmp_path / "keys.yaml"})


def test_openapi_documents_the_agency_key_and_the_problem_answers(app: FastAPI) -> None:
    document = app.openapi()
    decision = document["paths"]["/api/v1/agency/requests/{tracking_code}/decision"]["post"]
    assert {"202", "401", "403", "404", "409", "422", "503"} <= set(decision["responses"])
    assert decision["security"]
    schemes = document["components"]["securitySchemes"]
    assert any(scheme.get("name") == "X-Agency-Key" for scheme in schemes.values())
    complaint = document["paths"]["/api/v1/requests/{tracking_code}/complaint"]["post"]
    assert {"202", "404", "409", "422", "503"} <= set(complaint["responses"])
