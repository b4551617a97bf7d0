"""Every route returning personal data says so in its service's OpenAPI document (`x-personal-data`, with its
503), carries the recording dependency (shared/access_audit.py), and records exactly one AccessRecorded per
successful call (none for a refused one): each marked route is called here, in process, its records read from
faststream's in-memory broker."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from opentelemetry.sdk.trace import TracerProvider

from sandbox.agencies import registered_mobile
from services.identity.adapters_keys import SigningKeys
from services.inquiry.app import create_app as create_inquiry
from services.intake.app import create_app as create_intake
from services.notify.app import create_app as create_notify
from services.notify.service import Notify, record_contact
from services.notify.settings import DEV_INTERNAL_KEY, NotifySettings
from services.notify.store import Notification, create_tables
from services.tracking.app import create_app as create_tracking
from services.tracking.consumers import Tracking
from services.tracking.domain_terms import catalog_terms
from services.tracking.service import Position, fold_event
from services.tracking.settings import TrackingSettings
from services.tracking.store_migrations import migrate
from shared.access_audit import OPENAPI_MARKER, api_routes, declared_personal_data
from shared.catalog import load_catalog
from shared.db import make_engine
from shared.domain.identity import make_valid_national_id
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.domain.working_days import load_calendar
from shared.events import AccessRecorded, Applicant, RequestSubmitted, parse_access_event, utcnow
from shared.settings import RedisSettings
from shared.topics import Topic
from testkit.sessions import citizen_token, trust_keys

NATIONAL_ID = make_valid_national_id("001234567")
CODES = TrackingCodeGenerator(key=b"c" * 32, replica_id=5)
# No Redis here: a port nothing listens on, so every Redis use fails at once and the services degrade as designed.
NO_REDIS = RedisSettings(url="redis://127.0.0.1:1/0")

# The routes that return personal data today; a route added to or dropped from this set is a decision to review.
PERSONAL_DATA_ROUTES = {
    ("tracking", "POST", "/api/v1/tracking/lookup"),
    ("tracking", "POST", "/api/v1/tracking/events"),
    ("tracking", "GET", "/api/v1/tracking/history"),
    ("tracking", "GET", "/api/v1/tracking/access-log"),
    ("notify", "GET", "/internal/v1/notifications/{tracking_code}"),
}


@functools.cache
def all_apps() -> dict[str, FastAPI]:
    """Every service's app, built once for this module (only read here)."""
    return {
        "intake": create_intake(),
        "inquiry": create_inquiry(),
        "tracking": create_tracking(),
        "notify": create_notify(),
    }


def declared_routes(apps: dict[str, FastAPI]) -> set[tuple[str, str, str]]:
    return {
        (name, method, route.path)
        for name, app in apps.items()
        for route in api_routes(app.routes)
        if declared_personal_data(route) is not None
        for method in route.methods or ()
    }


def test_the_routes_returning_personal_data_are_exactly_the_declared_ones() -> None:
    assert declared_routes(all_apps()) == PERSONAL_DATA_ROUTES


def test_every_declared_route_is_marked_in_openapi_with_its_503_and_no_other_is() -> None:
    apps = all_apps()
    marked = {
        (name, method.upper(), path)
        for name, app in apps.items()
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if OPENAPI_MARKER in operation
    }
    assert marked == declared_routes(apps)
    for name, method, path in marked:
        operation = apps[name].openapi()["paths"][path][method.lower()]
        assert operation[OPENAPI_MARKER]["resource_kind"] and operation[OPENAPI_MARKER]["purpose"]
        assert operation["responses"]["503"]["content"]["application/problem+json"]


# --- each declared route, called ------------------------------------------------------------------


@dataclass
class Called:
    """A service app in process with its broker in memory, and the access records it published."""

    app: FastAPI
    records: list[AccessRecorded]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://desk")


def submitted() -> RequestSubmitted:
    return RequestSubmitted(
        tracking_code=CODES.next_code(),
        service_id="birth-certificate-duplicate",
        catalog_version=1,
        agency="civil-registry",
        applicant=Applicant(national_id=NATIONAL_ID, mobile="09121234567", birth_date=date(1990, 1, 31)),
        fields={"reason": "lost"},
        accept_by=utcnow() + timedelta(minutes=1),
    )


@pytest.fixture
async def tracking(tmp_path: Path) -> AsyncIterator[tuple[Called, RequestSubmitted]]:
    settings = TrackingSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'tracking.db'}",
        redis=NO_REDIS,
        stream_max_s=0.3,
        stream_poll_s=0.1,
    )
    app = create_tracking(settings, tracer_provider=TracerProvider())
    engine = make_engine(settings.database_url)
    await migrate(engine)
    await engine.dispose()
    deps: Tracking = app.state.tracking
    event = submitted()
    await fold_event(
        sessions=deps.sessions,
        event=event,
        position=Position(Topic.REQUESTS, 0, 0),
        lookup_key=deps.lookup_key,
        terms_of=catalog_terms(load_catalog()),
        calendar=load_calendar(),
    )
    async with spied(app) as called:
        yield called, event


@pytest.fixture
async def notify(tmp_path: Path) -> AsyncIterator[tuple[Called, str]]:
    settings = NotifySettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'notify.db'}", redis=NO_REDIS)
    app = create_notify(settings, tracer_provider=TracerProvider())
    engine = make_engine(settings.database_url)
    async with engine.begin() as connection:
        await create_tables(connection)
    await engine.dispose()
    deps: Notify = app.state.notify
    event = submitted()
    await record_contact(sessions=deps.sessions, event=event, audit_key=deps.audit_key)
    async with deps.sessions() as session:
        session.add(
            Notification(status_event_id="s-1", channel="sms", tracking_code=event.tracking_code, status="SUBMITTED")
        )
        await session.commit()
    async with spied(app) as called:
        yield called, event.tracking_code


@contextlib.asynccontextmanager
async def spied(app: FastAPI) -> AsyncIterator[Called]:
    """The app's broker in memory, with a spy on desk.access."""
    called = Called(app, [])
    broker: KafkaBroker = app.state.bus.broker

    @broker.subscriber(Topic.ACCESS, group_id="access-spy")
    async def spy(body: dict[str, Any]) -> None:
        called.records.append(parse_access_event(body))

    async with TestKafkaBroker(broker):
        yield called


Call = Callable[[httpx.AsyncClient, bool], Awaitable[httpx.Response]]


def lookup_call(path: str, event: RequestSubmitted) -> Call:
    async def call(client: httpx.AsyncClient, right: bool) -> httpx.Response:
        national_id = NATIONAL_ID if right else make_valid_national_id("009876543")
        return await client.post(path, json={"tracking_code": event.tracking_code, "national_id": national_id})

    return call


def session_call(app: FastAPI, path: str) -> Call:
    """GET `path` under the citizen's session (a forged token when not `right`)."""
    keys = SigningKeys.ephemeral()
    trust_keys(app, keys)
    token = citizen_token(keys, national_id=NATIONAL_ID, mobile=registered_mobile(NATIONAL_ID))

    async def call(client: httpx.AsyncClient, right: bool) -> httpx.Response:
        return await client.get(path, headers={"Authorization": f"Bearer {token if right else 'forged.token'}"})

    return call


def notifications_call(code: str) -> Call:
    async def call(client: httpx.AsyncClient, right: bool) -> httpx.Response:
        return await client.get(
            f"/internal/v1/notifications/{code if right else CODES.next_code()}",
            headers={"X-Internal-Key": DEV_INTERNAL_KEY},
        )

    return call


async def exactly_one_record_per_success(called: Called, call: Call) -> list[AccessRecorded]:
    async with called.client() as client:
        for _ in range(2):
            refused = await call(client, False)
            assert refused.status_code in {401, 404}, refused.text
        assert called.records == [], "a refused call records nothing"
        for expected in (1, 2):
            answered = await call(client, True)
            assert answered.status_code == 200, answered.text
            assert len(called.records) == expected, "one record per successful call"
    assert len({record.access_id for record in called.records}) == 2
    assert NATIONAL_ID not in str([record.model_dump() for record in called.records])
    return called.records


@pytest.mark.parametrize("path", ["/api/v1/tracking/lookup", "/api/v1/tracking/events"])
async def test_a_lookup_records_one_access_per_answer(tracking: tuple[Called, RequestSubmitted], path: str) -> None:
    called, event = tracking
    records = await exactly_one_record_per_success(called, lookup_call(path, event))
    expected_subject = called.app.state.access_recorder.subject_of(NATIONAL_ID)
    assert {(r.subject, r.resource, r.resource_kind.value, r.purpose.value) for r in records} == {
        (expected_subject, event.tracking_code, "request", "follow_up")
    }


async def test_the_history_records_one_access_per_answer(tracking: tuple[Called, RequestSubmitted]) -> None:
    called, _ = tracking
    records = await exactly_one_record_per_success(called, session_call(called.app, "/api/v1/tracking/history"))
    assert {(r.resource_kind.value, r.resource, r.actor) for r in records} == {("history", "history", "self")}


async def test_the_access_log_records_one_access_per_answer(tracking: tuple[Called, RequestSubmitted]) -> None:
    called, _ = tracking
    records = await exactly_one_record_per_success(called, session_call(called.app, "/api/v1/tracking/access-log"))
    expected_subject = called.app.state.access_recorder.subject_of(NATIONAL_ID)
    assert {(r.subject, r.resource_kind.value, r.resource, r.purpose.value, r.actor) for r in records} == {
        (expected_subject, "access_log", "access-log", "follow_up", "self")
    }


async def test_notifys_notifications_route_records_one_access_per_answer(notify: tuple[Called, str]) -> None:
    called, code = notify
    records = await exactly_one_record_per_success(called, notifications_call(code))
    assert {(r.actor_kind.value, r.resource_kind.value, r.resource, r.purpose.value) for r in records} == {
        ("service", "notifications", code, "support")
    }


def test_every_declared_route_is_called_above() -> None:
    called_here = {
        ("tracking", "POST", "/api/v1/tracking/lookup"),
        ("tracking", "POST", "/api/v1/tracking/events"),
        ("tracking", "GET", "/api/v1/tracking/history"),
        ("tracking", "GET", "/api/v1/tracking/access-log"),
        ("notify", "GET", "/internal/v1/notifications/{tracking_code}"),
    }
    assert declared_routes(all_apps()) <= called_here, "call the new route in this module"
