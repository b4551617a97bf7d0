"""intake's HTTP API in memory: the app is built without its lifespan (no Kafka) and its publish is faked."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from services.intake.app import create_app
from services.intake.service import Intake
from services.intake.settings import IntakeSettings
from shared.domain.digits import to_persian_digits
from shared.domain.identity import make_valid_national_id
from shared.domain.tracking_code import format_for_display, parse_tracking_code
from shared.events import Applicant, Language
from tests.asgi import asgi_client
from tests.problems import assert_problem
from tests.unit.intake_fakes import AllowAll, FakePublish, MemoryIdempotency

SERVICE_ID = "birth-certificate-duplicate"
NATIONAL_ID = make_valid_national_id("001234567")


def body(**applicant: Any) -> dict[str, Any]:
    return {
        "service_id": SERVICE_ID,
        "applicant": {
            "national_id": NATIONAL_ID,
            "mobile": "09121234567",
            "email": "citizen@example.ir",
            "birth_date": "1990-01-31",
            **applicant,
        },
        "fields": {"reason": "lost"},
    }


def build_app(**settings: Any) -> FastAPI:
    return create_app(IntakeSettings(**settings), tracer_provider=TracerProvider())


def wire(app: FastAPI, publish: FakePublish, *, connected: bool = True) -> None:
    intake: Intake = app.state.intake
    if connected:
        app.state.bus.connected.set()
    intake.publish_submission = publish
    intake.rate_limits = AllowAll()  # type: ignore[assignment]
    intake.idempotency = MemoryIdempotency()  # type: ignore[assignment]


async def submit_once(publish: FakePublish, *, connected: bool = True, **settings: Any) -> httpx.Response:
    """A valid submission to an app of its own, built with `settings`, that publishes through `publish`."""
    app = build_app(**settings)
    wire(app, publish, connected=connected)
    async with asgi_client(app, "http://intake") as client:
        return await client.post("/api/v1/requests", json=body())


@pytest.fixture
def app(publish: FakePublish) -> FastAPI:
    app = build_app()
    wire(app, publish)
    return app


# --- accepted -------------------------------------------------------------------------------------


async def test_valid_submission_is_accepted_with_a_tracking_code(
    client: httpx.AsyncClient, publish: FakePublish
) -> None:
    response = await client.post("/api/v1/requests", json=body())
    assert response.status_code == 202, response.text
    accepted = response.json()
    code = accepted["tracking_code"]
    assert len(code) == 15
    assert parse_tracking_code(code) == code
    assert accepted["tracking_code_display"] == format_for_display(code)
    assert accepted["service_id"] == SERVICE_ID
    assert accepted["catalog_version"] == 2
    assert accepted["status"] == "SUBMITTED"
    assert len(publish.published) == 1
    assert publish.published[0].tracking_code == code


async def test_published_event_carries_the_normalised_submission(
    client: httpx.AsyncClient, publish: FakePublish
) -> None:
    before = datetime.now(UTC)
    response = await client.post(
        "/api/v1/requests",
        json=body(
            national_id=to_persian_digits(NATIONAL_ID),
            mobile="+989121234567",
            birth_date=to_persian_digits("1990-01-31"),
            language="en",
        ),
    )
    assert response.status_code == 202, response.text
    [event] = publish.published
    assert event.event_type == "RequestSubmitted"
    assert event.service_id == SERVICE_ID
    assert event.catalog_version == 2
    assert event.agency == "civil-registry"
    assert event.applicant == Applicant(
        national_id=NATIONAL_ID,
        mobile="09121234567",
        email="citizen@example.ir",
        birth_date=date(1990, 1, 31),
        language=Language.EN,
    )
    assert event.fields == {"reason": "lost"}
    assert before + timedelta(seconds=4) < event.accept_by <= datetime.now(UTC) + timedelta(seconds=5)


async def test_each_submission_gets_its_own_tracking_code(client: httpx.AsyncClient, publish: FakePublish) -> None:
    codes = set()
    for _ in range(5):
        response = await client.post("/api/v1/requests", json=body())
        assert response.status_code == 202
        codes.add(response.json()["tracking_code"])
    assert len(codes) == 5
    assert len({event.event_id for event in publish.published}) == 5


async def test_submission_appended_exactly_at_accept_by_is_accepted() -> None:
    assert (await submit_once(FakePublish(late_by_ms=0))).status_code == 202


async def test_create_time_stamp_is_accepted_however_late() -> None:
    # Without LogAppendTime the broker never said when it appended, so the submission counts.
    assert (await submit_once(FakePublish(late_by_ms=60_000, timestamp_type=0))).status_code == 202


# --- refused input --------------------------------------------------------------------------------


async def test_invalid_fields_are_a_422_problem_naming_each_field(
    client: httpx.AsyncClient, publish: FakePublish
) -> None:
    wrong_check_digit = NATIONAL_ID[:-1] + str((int(NATIONAL_ID[-1]) + 1) % 10)
    bad = body(national_id=wrong_check_digit, mobile="12345")
    bad["fields"] = {"colour": "blue"}
    response = await client.post("/api/v1/requests", json=bad)
    problem = assert_problem(response, 422)
    fields = {error["field"]: error for error in problem["errors"]}
    assert set(fields) == {"applicant.national_id", "applicant.mobile", "fields.colour", "fields.reason"}
    assert fields["applicant.national_id"]["code"] == "national_id_check_digit"
    assert all(error["message_fa"] and error["message_en"] for error in problem["errors"])
    assert publish.published == []


async def test_problem_does_not_echo_the_national_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/requests", json=body(mobile="12345"))
    assert_problem(response, 422)
    assert NATIONAL_ID not in response.text


@pytest.mark.parametrize(
    "payload",
    [
        {"service_id": SERVICE_ID, "fields": {"reason": "lost"}},
        {"service_id": SERVICE_ID, "applicant": "me", "fields": {}},
        {"service_id": SERVICE_ID, "applicant": {"national_id": NATIONAL_ID}, "fields": {}},
        {**body(), "extra": 1},
        {**body(language="de")},
        {**body(), "fields": {"reason": 42}},
        [],
    ],
    ids=[
        "no-applicant",
        "applicant-not-object",
        "applicant-incomplete",
        "extra-key",
        "bad-language",
        "bad-field",
        "list",
    ],
)
async def test_malformed_body_is_a_422_problem_not_a_500(
    client: httpx.AsyncClient, publish: FakePublish, payload: Any
) -> None:
    response = await client.post("/api/v1/requests", json=payload)
    problem = assert_problem(response, 422)
    assert problem["errors"]
    assert all(error["field"] and error["message_fa"] for error in problem["errors"])
    assert publish.published == []


async def test_email_the_applicant_model_refuses_is_a_422_problem_not_a_500(publish: FakePublish) -> None:
    app = build_app()
    wire(app, publish)
    async with asgi_client(app, "http://intake", raise_app_exceptions=False) as client:
        response = await client.post("/api/v1/requests", json=body(email="a@b"))
    problem = assert_problem(response, 422)
    assert [error["field"] for error in problem["errors"]] == ["applicant.email"]
    assert publish.published == []


async def test_missing_applicant_is_named_in_the_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/requests", json={"service_id": SERVICE_ID, "fields": {}})
    problem = assert_problem(response, 422)
    assert [(error["field"], error["code"]) for error in problem["errors"]] == [("applicant", "missing")]


async def test_body_that_is_not_json_is_a_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/requests", content=b"{not json", headers={"content-type": "application/json"})
    assert_problem(response, 422)


async def test_unknown_service_is_a_404_problem(client: httpx.AsyncClient, publish: FakePublish) -> None:
    response = await client.post("/api/v1/requests", json={**body(), "service_id": "no-such-service"})
    problem = assert_problem(response, 404)
    assert [error["field"] for error in problem["errors"]] == ["service_id"]
    assert "no-such-service" in problem["detail"]
    assert publish.published == []


# --- the bus cannot take it: 503 ------------------------------------------------------------------


async def test_disconnected_bus_is_a_503_problem_with_retry_after() -> None:
    publish = FakePublish()
    response = await submit_once(publish, connected=False)
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "5"
    assert publish.published == []


async def test_failed_publish_is_a_503_problem_with_retry_after() -> None:
    publish = FakePublish(error=ConnectionError("kafka is down"))
    response = await submit_once(publish)
    problem = assert_problem(response, 503)
    assert response.headers["retry-after"] == "5"
    assert "kafka is down" not in response.text
    assert problem["detail_fa"]
    assert len(publish.published) == 1


async def test_submission_appended_after_accept_by_is_a_503_problem() -> None:
    response = await submit_once(FakePublish(late_by_ms=1))
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "5"


async def test_publish_that_never_returns_is_a_503_problem_in_bounded_time() -> None:
    async with asyncio.timeout(5):
        response = await submit_once(FakePublish(hang=True), accept_window_s=0.05, accept_grace_s=0.0)
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "5"


# --- the catalog ----------------------------------------------------------------------------------


async def test_service_list_shows_the_seeded_service(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/services")
    assert response.status_code == 200
    services = response.json()
    assert SERVICE_ID in [service["id"] for service in services]
    [summary] = [service for service in services if service["id"] == SERVICE_ID]
    assert summary == {
        "id": SERVICE_ID,
        "version": 2,
        "agency": "civil-registry",
        "title_fa": "صدور المثنی شناسنامه",
        "title_en": "Duplicate birth certificate",
        "duration_working_days": 5,
        "fee_rials": 0,
    }


async def test_service_definition_is_published_in_full(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.get(f"/api/v1/services/{SERVICE_ID}")
    assert response.status_code == 200
    definition = response.json()
    assert definition["id"] == SERVICE_ID
    assert definition["version"] == 2
    assert [field["name"] for field in definition["fields"]] == ["reason"]
    assert [inquiry["id"] for inquiry in definition["inquiries"]] == ["identity"]
    assert definition["decision"] == "automatic"
    assert definition["laws"] and definition["steps"] and definition["complaint_procedure"]["fa"]
    assert definition == app.state.intake.catalog.get(SERVICE_ID).model_dump(mode="json")


async def test_unknown_service_definition_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/services/no-such-service")
    problem = assert_problem(response, 404)
    assert problem["errors"][0]["code"] == "unknown_service"


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404)


async def test_catalog_reads_work_while_the_bus_is_down() -> None:
    app = build_app()
    wire(app, FakePublish(), connected=False)
    async with asgi_client(app, "http://intake") as client:
        assert (await client.get("/api/v1/services")).status_code == 200
        assert (await client.get(f"/api/v1/services/{SERVICE_ID}")).status_code == 200


# --- idempotency keys and rate limits (the Redis-backed guards are tested on real Redis in integration) ----


async def test_the_same_idempotency_key_and_body_returns_the_same_tracking_code(
    client: httpx.AsyncClient, publish: FakePublish
) -> None:
    submission = body()
    first = await client.post("/api/v1/requests", json=submission, headers={"Idempotency-Key": "k-1"})
    again = await client.post("/api/v1/requests", json=submission, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["tracking_code"] == again.json()["tracking_code"]
    assert len(publish.published) == 1


async def test_the_same_idempotency_key_with_another_body_is_refused(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/requests", json=body(), headers={"Idempotency-Key": "k-2"})
    other = body()
    other["fields"]["reason"] = "worn out"
    refused = await client.post("/api/v1/requests", json=other, headers={"Idempotency-Key": "k-2"})
    problem = assert_problem(refused, 422)
    assert problem["type"].endswith("idempotency-key-reused")
    assert problem["errors"][0]["field"] == "Idempotency-Key"


async def test_a_retry_while_the_first_attempt_is_in_flight_gets_409(app: FastAPI, client: httpx.AsyncClient) -> None:
    submission = body()
    from services.intake.adapters_guards import fingerprint
    from services.intake.schemas import SubmissionIn

    claim = fingerprint(SubmissionIn.model_validate(submission).model_dump(mode="json"))
    await app.state.intake.idempotency.begin("k-3", claim)
    response = await client.post("/api/v1/requests", json=submission, headers={"Idempotency-Key": "k-3"})
    assert_problem(response, 409)
    assert response.headers["retry-after"] == "2"


async def test_a_failed_attempt_frees_its_key_for_a_retry(client: httpx.AsyncClient, publish: FakePublish) -> None:
    submission = body()
    publish.error = ConnectionError("kafka down")
    failed = await client.post("/api/v1/requests", json=submission, headers={"Idempotency-Key": "k-4"})
    assert_problem(failed, 503)
    publish.error = None
    retried = await client.post("/api/v1/requests", json=submission, headers={"Idempotency-Key": "k-4"})
    assert retried.status_code == 202


async def test_idempotency_key_without_redis_is_refused_with_503_not_risked(
    app: FastAPI, client: httpx.AsyncClient, publish: FakePublish
) -> None:
    app.state.intake.idempotency.down = True
    response = await client.post("/api/v1/requests", json=body(), headers={"Idempotency-Key": "k-5"})
    assert_problem(response, 503)
    assert response.headers["retry-after"]
    assert publish.published == []


async def test_an_invalid_idempotency_key_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/requests", json=body(), headers={"Idempotency-Key": "bad\tkey"})
    assert_problem(response, 422)


async def test_rate_limited_submission_gets_429_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient, publish: FakePublish
) -> None:
    app.state.intake.rate_limits.deny_for = 17
    response = await client.post("/api/v1/requests", json=body())
    problem = assert_problem(response, 429)
    assert response.headers["retry-after"] == "17"
    assert problem["title_fa"]
    assert publish.published == []
