"""tracking's "who looked at my file" route and the lookup under the applicant's session, in process (the broker in
memory, no Redis: the lookup budgets in the process's own windows)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from redis.exceptions import ConnectionError as RedisConnectionError

from sandbox.agencies import registered_mobile
from services.identity.adapters_keys import SigningKeys
from services.tracking.app import create_app
from services.tracking.consumers import Tracking
from services.tracking.domain_audit import AccessEntry
from services.tracking.domain_terms import catalog_terms
from services.tracking.service import Position, fold_event
from services.tracking.service_audit import store_entries
from services.tracking.settings import TrackingSettings
from services.tracking.store_migrations import migrate
from shared.catalog import load_catalog
from shared.db import make_engine
from shared.domain.identity import make_valid_national_id
from shared.domain.jalali import to_jalali_datetime_text
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.domain.working_days import load_calendar
from shared.events import AccessRecorded, Applicant, RequestSubmitted, parse_access_event, utcnow
from shared.sessions import SESSION_VERIFIER_STATE, SessionVerifier, StaticKeys
from shared.settings import RedisSettings
from shared.topics import Topic
from testkit.sessions import citizen_token, trust_keys
from tests.problems import assert_problem

NATIONAL_ID = make_valid_national_id("001234567")
OTHER_ID = make_valid_national_id("007654321")
CODES = TrackingCodeGenerator(key=b"L" * 32, replica_id=6)
LOG = "/api/v1/tracking/access-log"
LOOKUP = "/api/v1/tracking/lookup"
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@dataclass
class Desk:
    """tracking in process with one folded request of NATIONAL_ID's, signing keys it trusts, and the access
    records it published."""

    app: FastAPI
    keys: SigningKeys
    code: str
    records: list[AccessRecorded]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://desk")

    def bearer(self, national_id: str = NATIONAL_ID) -> dict[str, str]:
        token = citizen_token(self.keys, national_id=national_id, mobile=registered_mobile(national_id))
        return {"Authorization": f"Bearer {token}"}

    def subject(self, national_id: str = NATIONAL_ID) -> str:
        subject: str = self.app.state.access_recorder.subject_of(national_id)
        return subject


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    settings = TrackingSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'tracking.db'}",
        redis=RedisSettings(url="redis://127.0.0.1:1/0"),
        lookup_limit_per_client="1000/minute",
        lookup_failures_per_code="3/minute",
        lookup_successes_per_code="5/minute",
    )
    app = create_app(settings, tracer_provider=TracerProvider())
    engine = make_engine(settings.database_url)
    await migrate(engine)
    await engine.dispose()
    deps: Tracking = app.state.tracking
    event = RequestSubmitted(
        tracking_code=CODES.next_code(),
        service_id="birth-certificate-duplicate",
        catalog_version=1,
        agency="civil-registry",
        applicant=Applicant(national_id=NATIONAL_ID, mobile="09121234567", birth_date=date(1990, 1, 31)),
        fields={"reason": "lost"},
        accept_by=utcnow() + timedelta(minutes=1),
    )
    await fold_event(
        sessions=deps.sessions,
        event=event,
        position=Position(Topic.REQUESTS, 0, 0),
        lookup_key=deps.lookup_key,
        terms_of=catalog_terms(load_catalog()),
        calendar=load_calendar(),
    )
    keys = SigningKeys.ephemeral()
    trust_keys(app, keys)
    records: list[AccessRecorded] = []
    broker: KafkaBroker = app.state.bus.broker

    @broker.subscriber(Topic.ACCESS, group_id="access-spy")
    async def spy(body: dict[str, Any]) -> None:
        records.append(parse_access_event(body))

    async with TestKafkaBroker(broker):
        yield Desk(app, keys, event.tracking_code, records)


def entry(subject: str, n: int, **fields: str) -> AccessEntry:
    base = {
        "actor_kind": "citizen",
        "actor": "self",
        "organisation": "desk",
        "role": "citizen",
        "resource_kind": "request",
        "resource": "13160-00012-42902",
        "purpose": "follow_up",
        "client": "10.0.0.1",
        **fields,
    }
    return AccessEntry(
        access_id=f"00000000-0000-0000-0000-{n:012d}", subject=subject, occurred_at=T0 + timedelta(minutes=n), **base
    )


async def stored(desk: Desk, *entries: AccessEntry) -> None:
    deps: Tracking = desk.app.state.tracking
    await store_entries(deps.sessions, list(entries))


# --- who looked ---------------------------------------------------------------------------------------------


async def test_the_citizen_sees_who_looked_newest_first_with_staff_masked(desk: Desk) -> None:
    mine = desk.subject()
    await stored(
        desk,
        entry(mine, 1),
        entry(
            mine,
            2,
            actor_kind="agency",
            actor="property-registry",
            organisation="property-registry",
            role="reviewer",
            purpose="review",
            client="agency.property-registry.inbox",
        ),
        entry(
            mine,
            3,
            actor_kind="agency_staff",
            actor="staff-4711",
            organisation="civil-registry",
            role="officer",
            purpose="review",
        ),
        entry(
            mine,
            4,
            actor_kind="operator",
            actor="op-12",
            organisation="office-1234",
            role="clerk",
            purpose="support",
            resource_kind="history",
            resource="history",
        ),
        entry(desk.subject(OTHER_ID), 5),
    )
    async with desk.client() as client:
        answer = await client.get(LOG, headers=desk.bearer())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["next_before"] is None
    accesses = body["accesses"]
    assert [a["seq"] for a in accesses] == [4, 3, 2, 1]
    operator, staff, agency, own = accesses
    assert (operator["actor"], operator["role"], operator["organisation"]) == (None, "clerk", "office-1234")
    assert (staff["actor"], staff["role"], staff["organisation"]) == (None, "officer", "civil-registry")
    assert "staff-4711" not in answer.text and "op-12" not in answer.text
    assert (agency["actor_kind"], agency["actor"], agency["purpose"]) == ("agency", "property-registry", "review")
    assert agency["detail_en"] == "Deeds and Properties Registration Organization looked at your request for review."
    assert agency["detail_fa"] == "سازمان ثبت اسناد و املاک کشور درخواست شما را برای بررسی دید."
    assert (
        staff["detail_en"]
        == "An officer of National Organization for Civil Registration looked at your request for review."
    )
    assert (own["actor"], own["resource_kind"], own["resource"]) == ("self", "request", "13160-00012-42902")
    assert own["detail_en"] == "You looked at your request for follow-up."
    assert own["occurred_at"] == "2026-03-01T09:31:00Z"
    assert own["occurred_at_jalali"] == to_jalali_datetime_text(T0 + timedelta(minutes=1)) == "1404/12/10 13:01"
    assert "client" not in own  # whoever read, from where is not shown
    assert NATIONAL_ID not in answer.text and mine not in answer.text


async def test_the_access_log_pages_by_before_and_limit(desk: Desk) -> None:
    mine = desk.subject()
    await stored(desk, *(entry(mine, n) for n in range(1, 8)))
    seen: list[int] = []
    before: int | None = None
    async with desk.client() as client:
        while True:
            params = {"limit": 3} | ({"before": before} if before is not None else {})
            page = (await client.get(LOG, params=params, headers=desk.bearer())).json()
            seen += [a["seq"] for a in page["accesses"]]
            before = page["next_before"]
            if before is None:
                break
        assert seen == [7, 6, 5, 4, 3, 2, 1]
        default = (await client.get(LOG, headers=desk.bearer())).json()
        assert len(default["accesses"]) == 7
        for bad in ({"limit": 0}, {"limit": 101}, {"before": 0}, {"before": "x"}):
            assert_problem(await client.get(LOG, params=bad, headers=desk.bearer()), 422)


async def test_another_citizen_and_no_session_see_nothing_of_it(desk: Desk) -> None:
    await stored(desk, entry(desk.subject(), 1), entry(desk.subject(), 2))
    async with desk.client() as client:
        theirs = await client.get(LOG, headers=desk.bearer(OTHER_ID))
        assert theirs.status_code == 200 and theirs.json() == {"accesses": [], "next_before": None}
        refused = await client.get(LOG)
        assert_problem(refused, 401, slug="session-unauthenticated")
        assert_problem(await client.get(LOG, headers={"Authorization": "Bearer forged.token"}), 401)
    # Reading the list is recorded, under the reader's own subject; the refused reads are not.
    assert [(r.subject, r.resource_kind.value, r.resource) for r in desk.records] == [
        (desk.subject(OTHER_ID), "access_log", "access-log")
    ]


# --- the lookup under the applicant's session ---------------------------------------------------------------


async def look(client: httpx.AsyncClient, code: str, national_id: str, headers: dict[str, str] | None = None) -> int:
    response = await client.post(LOOKUP, json={"tracking_code": code, "national_id": national_id}, headers=headers)
    return response.status_code


async def test_a_stranger_closing_a_code_leaves_its_signed_in_owner_able_to_look_it_up(desk: Desk) -> None:
    async with desk.client() as client:
        assert [await look(client, desk.code, OTHER_ID) for _ in range(4)] == [404, 404, 404, 429]
        assert await look(client, desk.code, NATIONAL_ID) == 429  # anonymous: the code is closed for everyone
        for _ in range(10):  # more than the successes' window, too: the owner's lookups count against nothing
            assert await look(client, desk.code, NATIONAL_ID, desk.bearer()) == 200
        # Another citizen's session naming the owner's national ID is an anonymous lookup.
        assert await look(client, desk.code, NATIONAL_ID, desk.bearer(OTHER_ID)) == 429
        # A session whose citizen is not the code's applicant finds nothing, uniformly.
        assert await look(client, desk.code, OTHER_ID, desk.bearer(OTHER_ID)) == 404
        invalid = await client.post(
            LOOKUP,
            json={"tracking_code": desk.code, "national_id": NATIONAL_ID},
            headers={"Authorization": "Bearer forged.token"},
        )
        assert_problem(invalid, 401, slug="session-unauthenticated")
    assert len(desk.records) == 10  # one per answer, none for the refusals


async def test_anonymous_successes_fill_their_own_window_and_close_the_code_to_anonymous_lookups(desk: Desk) -> None:
    async with desk.client() as client:
        assert [await look(client, desk.code, NATIONAL_ID) for _ in range(6)] == [200] * 5 + [429]
        assert await look(client, desk.code, OTHER_ID) == 429  # the same answer whatever the national ID
        assert await look(client, desk.code, NATIONAL_ID, desk.bearer()) == 200


async def test_a_session_that_cannot_be_checked_looks_up_as_an_anonymous_caller(desk: Desk) -> None:
    class DownRedis:
        async def mget(self, *names: str) -> list[None]:
            raise RedisConnectionError("down")

    setattr(
        desk.app.state,
        SESSION_VERIFIER_STATE,
        SessionVerifier(StaticKeys(desk.keys.public_key_set()), DownRedis()),  # type: ignore[arg-type]
    )
    async with desk.client() as client:
        assert [await look(client, desk.code, OTHER_ID) for _ in range(3)] == [404] * 3
        assert await look(client, desk.code, NATIONAL_ID, desk.bearer()) == 429


def test_the_lookup_documents_its_optional_session() -> None:
    operation = create_app().openapi()["paths"][LOOKUP]["post"]
    assert operation["security"] == [{"citizenSession": []}, {}]
    assert "401" in operation["responses"] and "429" in operation["responses"]
