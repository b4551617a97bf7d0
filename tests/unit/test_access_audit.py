"""Recording accesses to personal data (shared/access_audit.py), fail closed and bounded; tracking's handler of
desk.access; inquiry's record of a disclosure to an agency's inbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from services.inquiry.adapters import AgencyUnavailable
from services.inquiry.consumers import Inquiry
from services.inquiry.service import Agencies
from services.inquiry.store import PublishMarks
from services.inquiry.store import create_tables as create_inquiry_tables
from services.tracking import service_audit
from services.tracking.consumers import handle_access_record
from services.tracking.service_audit import AccessChain, verify_chain, who_looked
from services.tracking.store import Sessions
from services.tracking.store_migrations import migrate
from shared.access_audit import (
    AccessLog,
    AccessNotRecorded,
    AccessRecorder,
    install_personal_data,
    personal_data,
    subject_digest,
)
from shared.catalog import load_catalog
from shared.db import make_engine, make_sessionmaker
from shared.domain.identity import make_valid_national_id
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.envelope import cloudevent_headers, event_key
from shared.events import (
    AccessRecorded,
    ActorKind,
    Applicant,
    Purpose,
    RequestSubmitted,
    ResourceKind,
    derived_access_id,
    utcnow,
)
from shared.http import install_problem_handlers
from shared.kafka import make_broker
from shared.settings import AuditSettings, KafkaSettings
from shared.topics import Topic, agency_inbox_topic
from tests.unit.inquiry_wiring import FakeRegistry, Feed
from tests.unit.records import record_of

KEY = b"audit-subject-key-for-tests"
NATIONAL_ID = make_valid_national_id("001234567")
CODES = TrackingCodeGenerator(key=b"q" * 32, replica_id=1)


def recorder(publish: Any, *, timeout_s: float = 0.2) -> AccessRecorder:
    return AccessRecorder(publish=publish, subject_key=KEY, timeout_s=timeout_s, service="test")


def access(n: int = 0, *, subject: str | None = None) -> AccessRecorded:
    return AccessRecorded(
        subject=subject or subject_digest(NATIONAL_ID, KEY),
        actor_kind=ActorKind.CITIZEN,
        actor="self",
        organisation="desk",
        role="citizen",
        resource_kind=ResourceKind.REQUEST,
        resource=CODES.next_code(),
        purpose=Purpose.FOLLOW_UP,
        client="10.0.0.1",
        occurred_at=utcnow() + timedelta(microseconds=n),
    )


# --- the event and the recorder --------------------------------------------------------------------


def test_the_subject_is_the_same_for_every_typed_form_of_a_national_id() -> None:
    persian = NATIONAL_ID.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    assert subject_digest(persian, KEY) == subject_digest(f" {NATIONAL_ID} ", KEY) == subject_digest(NATIONAL_ID, KEY)
    assert subject_digest(NATIONAL_ID, KEY) != subject_digest(NATIONAL_ID, KEY + b"x")
    assert NATIONAL_ID not in subject_digest(NATIONAL_ID, KEY)


@pytest.mark.parametrize("field", ["resource", "actor", "organisation", "role", "client"])
def test_a_national_id_is_never_an_access_records_identifier(field: str) -> None:
    with pytest.raises(ValidationError, match="never an access record's identifier"):
        AccessRecorded.model_validate({**access().model_dump(mode="json"), field: NATIONAL_ID})


def test_an_access_record_is_keyed_by_its_subject_with_its_access_id_as_cloudevent_id() -> None:
    event = access()
    headers = cloudevent_headers(event, source="/test")
    assert event_key(event) == event.subject.encode()
    assert headers["ce_id"] == str(event.access_id)
    assert headers["ce_subject"] == event.subject
    assert headers["ce_type"] == "ir.khedmat.desk.AccessRecorded.v1"


async def test_a_record_kafka_does_not_acknowledge_in_time_is_refused_within_the_bound() -> None:
    async def never(_event: AccessRecorded) -> None:
        await asyncio.Event().wait()

    started = time.monotonic()
    with pytest.raises(AccessNotRecorded):
        await recorder(never, timeout_s=0.2).record(access())
    assert time.monotonic() - started < 1.0


async def test_a_publish_that_fails_is_refused() -> None:
    async def failing(_event: AccessRecorded) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(AccessNotRecorded):
        await recorder(failing).record(access())


async def test_an_unstarted_broker_is_refused_at_once() -> None:
    broker = make_broker(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"), client_id="t")
    started = time.monotonic()
    with pytest.raises(AccessNotRecorded):
        settings = AuditSettings(subject_key="k", timeout_s=2.0)
        await AccessRecorder.on_broker(broker, settings=settings, service="t").record(access())
    assert time.monotonic() - started < 2.5


# --- the route dependency --------------------------------------------------------------------------

Read = Annotated[AccessLog, personal_data(ResourceKind.REQUEST, Purpose.FOLLOW_UP)]
SECRET = "the-citizens-data"


def app_with(publish: Any) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.access_recorder = recorder(publish)

    @app.get("/records")
    async def records(access: Read) -> dict[str, str]:
        await access.record(national_id=NATIONAL_ID, resource="123451234512345")
        return {"data": SECRET}

    @app.get("/forgets")
    async def forgets(access: Read) -> dict[str, str]:
        return {"data": SECRET}

    @app.get("/twice")
    async def twice(access: Read) -> dict[str, str]:
        await access.record(national_id=NATIONAL_ID, resource="123451234512345")
        await access.record(national_id=NATIONAL_ID, resource="123451234512345")
        return {"data": SECRET}

    install_personal_data(app)
    return app


async def call(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path)


async def test_a_read_is_recorded_once_before_it_is_answered() -> None:
    seen: list[AccessRecorded] = []

    async def publish(event: AccessRecorded) -> None:
        seen.append(event)

    response = await call(app_with(publish), "/records")
    assert response.status_code == 200
    [event] = seen
    assert (event.actor_kind, event.actor, event.resource_kind, event.purpose) == (
        ActorKind.CITIZEN,
        "self",
        ResourceKind.REQUEST,
        Purpose.FOLLOW_UP,
    )
    assert event.subject == subject_digest(NATIONAL_ID, KEY) and event.client == "127.0.0.1"


async def test_a_read_whose_record_cannot_be_written_is_a_503_without_the_data() -> None:
    async def failing(_event: AccessRecorded) -> None:
        raise ConnectionError("down")

    response = await call(app_with(failing), "/records")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    problem = response.json()
    assert problem["type"].endswith("access-not-recorded") and problem["title_fa"] and problem["detail_fa"]
    assert SECRET not in response.text


@pytest.mark.parametrize("path", ["/forgets", "/twice"])
async def test_a_route_that_does_not_record_exactly_once_answers_500_without_the_data(path: str) -> None:
    async def publish(_event: AccessRecorded) -> None:
        return None

    response = await call(app_with(publish), path)
    assert response.status_code == 500
    assert SECRET not in response.text


def test_a_declared_route_is_marked_in_openapi_with_its_503() -> None:
    async def publish(_event: AccessRecorded) -> None:
        return None

    operation = app_with(publish).openapi()["paths"]["/records"]["get"]
    assert operation["x-personal-data"]["resource_kind"] == "request"
    assert operation["x-personal-data"]["purpose"] == "follow_up"
    assert "Retry-After" in operation["responses"]["503"]["headers"]


# --- tracking: desk.access into the chains ---------------------------------------------------------


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'tracking.db'}")
    await migrate(engine)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def test_records_are_chained_in_order_and_a_redelivery_is_stored_once(sessions: Sessions) -> None:
    chain = AccessChain(sessions)
    events = [access(n) for n in range(3)]
    for offset, event in enumerate([*events, events[1], events[0]]):
        await handle_access_record(record_of(Topic.ACCESS, event, offset=offset), chain=chain)
    subject = events[0].subject
    verdict = await verify_chain(sessions=sessions, subject=subject)
    assert verdict.describe() == "chain intact: 3 records"
    page = await who_looked(sessions=sessions, subject=subject, limit=2)
    assert [shown.resource for shown in page.accesses] == [events[2].resource, events[1].resource]
    rest = await who_looked(sessions=sessions, subject=subject, before=page.next_before, limit=2)
    assert [shown.resource for shown in rest.accesses] == [events[0].resource] and rest.next_before is None


async def test_records_arriving_together_are_stored_in_one_transaction(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    store = service_audit.store_entries

    async def counting(sessions: Sessions, entries: Any) -> int:
        batches.append(len(entries))
        return await store(sessions, entries)

    monkeypatch.setattr(service_audit, "store_entries", counting)
    chain = AccessChain(sessions, linger_s=0.01)
    subjects = [subject_digest(make_valid_national_id(f"00123{n:04d}"), KEY) for n in range(40)]
    events = [access(subject=subject) for subject in subjects]
    await asyncio.gather(*(handle_access_record(record_of(Topic.ACCESS, e), chain=chain) for e in events))
    assert batches == [40]
    for subject in subjects:
        assert (await verify_chain(sessions=sessions, subject=subject)).describe() == "chain intact: 1 records"


async def test_a_record_that_is_no_access_record_is_refused_for_the_dead_letter_topic(sessions: Sessions) -> None:
    with pytest.raises(ValidationError):
        await handle_access_record(
            record_of(Topic.ACCESS, {"event_type": "AccessRecorded", "subject": "nope"}), chain=AccessChain(sessions)
        )


# --- inquiry: the disclosure to an agency's inbox ---------------------------------------------------


async def test_a_review_request_is_recorded_as_the_agencys_access_just_before_it_is_sent(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'inquiry.db'}")
    await create_inquiry_tables(engine)
    inquiry_sessions = make_sessionmaker(engine)
    broker = make_broker(kafka=KafkaSettings(), client_id="t")
    seen: list[tuple[str, dict[str, Any], bytes | None]] = []

    @broker.subscriber(Topic.ACCESS, group_id="access-spy")
    async def access_spy(body: dict[str, Any], message: KafkaMessage) -> None:
        seen.append((Topic.ACCESS.value, body, message.raw_message.key))  # type: ignore[union-attr]

    @broker.subscriber(agency_inbox_topic("civil-registry"), group_id="inbox-spy")
    async def inbox_spy(body: dict[str, Any], message: KafkaMessage) -> None:
        seen.append((agency_inbox_topic("civil-registry"), body, message.raw_message.key))  # type: ignore[union-attr]

    deps = Inquiry(
        load_catalog(),
        Agencies(civil_registry=FakeRegistry(error=AgencyUnavailable("HTTP 503"))),
        broker,
        inquiry_sessions,
        PublishMarks(inquiry_sessions),
        audit_key=KEY,
    )
    event = RequestSubmitted(
        tracking_code=CODES.next_code(),
        service_id="birth-certificate-duplicate",
        catalog_version=1,
        agency="civil-registry",
        applicant=Applicant(national_id=NATIONAL_ID, mobile="09121234567", birth_date=date(1990, 1, 31)),
        fields={"reason": "lost", "office": "tehran"},
        accept_by=utcnow() + timedelta(minutes=1),
    )
    async with TestKafkaBroker(broker):
        await Feed(deps).deliver(event)
    await engine.dispose()

    assert [topic for topic, _, _ in seen] == [Topic.ACCESS.value, agency_inbox_topic("civil-registry")]
    (_, record, key), (_, review, _) = seen
    assert key == subject_digest(NATIONAL_ID, KEY).encode()
    assert record["access_id"] == str(derived_access_id(review["event_id"], "review"))
    assert (record["actor_kind"], record["actor"], record["purpose"]) == ("agency", "civil-registry", "review")
    assert (record["resource"], record["client"]) == (event.tracking_code, agency_inbox_topic("civil-registry"))
    assert NATIONAL_ID not in str(record)
