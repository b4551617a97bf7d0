"""The access audit on real servers: reads recorded on the real desk.access topic are chained per citizen by
tracking in SQLite and PostgreSQL, the verifier (the CLI, as a process) finds a record edited, removed or moved,
and a lookup whose record Kafka does not acknowledge is refused without its data, within the bound."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import text

from services.tracking.__main__ import run_audit_verify
from services.tracking.app import create_app as create_tracking
from services.tracking.consumers import Tracking
from services.tracking.domain_terms import catalog_terms
from services.tracking.service import Position, fold_event
from services.tracking.service_audit import verify_chain
from services.tracking.settings import TrackingSettings
from shared.access_audit import AccessRecorder
from shared.catalog import load_catalog
from shared.db import make_engine
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.domain.working_days import load_calendar
from shared.events import AccessRecorded, ActorKind, Applicant, Purpose, RequestSubmitted, ResourceKind, utcnow
from shared.settings import AuditSettings, KafkaSettings, RedisSettings
from shared.topics import Topic
from testkit.data import national_id as random_national_id
from testkit.infra import REPO_ROOT, TEST_SERVER_ENV, Servers
from testkit.kafka_tools import start_group_at_end
from testkit.tracking_stream import produce

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(240)]

AUDIT_KEY = "integration-audit-subject-key"
CODES = TrackingCodeGenerator(key=b"i" * 32, replica_id=6)


def settings_for(
    servers: Servers, kafka: KafkaSettings, database_url: str, *, audit_timeout_s: float = 2.0
) -> TrackingSettings:
    return TrackingSettings(
        kafka=kafka,
        database_url=database_url,
        redis=RedisSettings(url=servers.redis_url),
        group_id=f"audit-{uuid.uuid4().hex[:8]}",
        new_projection_start="group",
        # The tests poll lookups until the projection has the request: budgets out of the way.
        lookup_limit_per_client="10000/minute",
        lookup_failures_per_code="10000/minute",
        audit=AuditSettings(subject_key=AUDIT_KEY, timeout_s=audit_timeout_s),
    )


@contextlib.asynccontextmanager
async def running(settings: TrackingSettings, *, connected: bool = True) -> AsyncIterator[FastAPI]:
    app = create_tracking(settings, tracer_provider=TracerProvider())
    async with app.router.lifespan_context(app):
        if connected:
            await app.state.bus.wait(60)
        yield app


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tracking", timeout=30)


def submission(national_id: str) -> RequestSubmitted:
    return RequestSubmitted(
        tracking_code=CODES.next_code(),
        service_id="birth-certificate-duplicate",
        catalog_version=1,
        agency="civil-registry",
        applicant=Applicant(national_id=national_id, mobile="09121234567", birth_date=date(1990, 1, 31)),
        fields={"reason": "lost"},
        accept_by=utcnow() + timedelta(minutes=5),
    )


def accesses(recorder: AccessRecorder, national_id: str, count: int) -> list[AccessRecorded]:
    return [
        AccessRecorded(
            subject=recorder.subject_of(national_id),
            actor_kind=ActorKind.AGENCY_STAFF,
            actor=f"staff-{n}",
            organisation="civil-registry",
            role="reviewer",
            resource_kind=ResourceKind.REQUEST,
            resource=CODES.next_code(),
            purpose=Purpose.REVIEW,
            client="10.20.30.40",
        )
        for n in range(count)
    ]


async def chain_length(app: FastAPI, subject: str, expected: int) -> None:
    deps: Tracking = app.state.tracking
    async with asyncio.timeout(60):
        while (await verify_chain(sessions=deps.sessions, subject=subject)).records < expected:
            await asyncio.sleep(0.2)
    verdict = await verify_chain(sessions=deps.sessions, subject=subject)
    assert verdict.intact and verdict.records == expected


def audit_verify(database_url: str, national_id: str) -> subprocess.CompletedProcess[str]:
    """`python -m services.tracking audit-verify`, the national ID on stdin (never in the process list)."""
    env = {**os.environ, "TRACKING_DATABASE_URL": database_url, "KHEDMAT_AUDIT_SUBJECT_KEY": AUDIT_KEY}
    return subprocess.run(
        [sys.executable, "-m", "services.tracking", "audit-verify"],
        input=national_id + "\n",
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
        check=False,
    )


async def test_chains_built_from_the_topic_are_verified_and_each_tampering_is_found(
    servers: Servers, kafka_settings: KafkaSettings, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(servers, kafka_settings, database_url)
    await start_group_at_end(servers.kafka_bootstrap, settings.group_id)
    # Citizens of this test alone: the access group reads desk.access from its start, earlier tests' records too.
    citizens = {name: random_national_id() for name in ("intact", "edited", "gone", "moved")}
    async with running(settings) as app:
        recorder: AccessRecorder = app.state.access_recorder
        # One real lookup: a read through the route, recorded on the topic, chained by tracking.
        request = submission(citizens["intact"])
        await produce(servers.kafka_bootstrap, Topic.REQUESTS, [request])
        body = {"tracking_code": request.tracking_code, "national_id": citizens["intact"]}
        async with client_of(app) as client, asyncio.timeout(60):
            while (await client.post("/api/v1/tracking/lookup", json=body)).status_code != 200:
                await asyncio.sleep(0.3)
        await chain_length(app, recorder.subject_of(citizens["intact"]), 1)
        for name, national_id in citizens.items():
            events = accesses(recorder, national_id, 4 if name == "intact" else 5)
            for event in events:
                await recorder.record(event)
            await recorder.record(events[1])  # published again: stored once
            await chain_length(app, recorder.subject_of(national_id), 5)

    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            subject = {name: recorder.subject_of(national_id) for name, national_id in citizens.items()}
            where = "WHERE subject = :subject AND seq = :seq"
            await connection.execute(
                text(f"UPDATE access_record SET purpose = 'support' {where}"), {"subject": subject["edited"], "seq": 3}
            )
            await connection.execute(text(f"DELETE FROM access_record {where}"), {"subject": subject["gone"], "seq": 3})
            for old, new in ((2, -2), (3, 2), (-2, 3)):  # seq 2 and 3 trade places, whole rows
                await connection.execute(
                    text("UPDATE access_record SET seq = :new WHERE subject = :subject AND seq = :old"),
                    {"subject": subject["moved"], "old": old, "new": new},
                )
    finally:
        await engine.dispose()

    expected = {
        "intact": (0, "chain intact: 5 records"),
        "edited": (1, "chain broken: edited record at seq 3"),
        "gone": (1, "chain broken: missing record(s) after seq 2"),
        "moved": (1, "chain broken: reordered at seq 2"),
    }
    # The command as an operator runs it, for two of them (a process costs seconds on a busy machine); the
    # same function in this process for the others.
    for name in ("intact", "moved"):
        done = await asyncio.to_thread(audit_verify, database_url, citizens[name])
        code, line = expected[name]
        assert (done.returncode, done.stdout.strip().startswith(line)) == (code, True), (name, done.stdout, done.stderr)
        assert citizens[name] not in done.stdout + done.stderr
    cli_settings = TrackingSettings(database_url=database_url, audit=AuditSettings(subject_key=AUDIT_KEY))
    for name in ("edited", "gone"):
        capsys.readouterr()
        code, line = expected[name]
        assert await run_audit_verify(cli_settings, citizens[name]) == code
        assert capsys.readouterr().out.startswith(line)


async def folded_request(app: FastAPI, national_id: str) -> str:
    """A request in the projection, folded directly (the bus may be down): its tracking code."""
    deps: Tracking = app.state.tracking
    request = submission(national_id)
    await fold_event(
        sessions=deps.sessions,
        event=request,
        # A topic of its own: the live consumer resumes desk.requests from offsets this leaves alone.
        position=Position(f"audit-test-{uuid.uuid4().hex[:8]}", 0, 0),
        lookup_key=deps.lookup_key,
        terms_of=catalog_terms(load_catalog()),
        calendar=load_calendar(),
    )
    return request.tracking_code


def assert_refused_without_data(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    problem = response.json()
    assert problem["type"].endswith("access-not-recorded") and problem["title_fa"] and problem["detail"]
    # Only the problem: nothing of the request (its service, timeline, state).
    assert set(problem) <= {"type", "title", "status", "detail", "instance", "title_fa", "detail_fa", "errors"}
    assert "birth-certificate-duplicate" not in response.text and "SUBMITTED" not in response.text


async def test_a_lookup_is_refused_without_its_data_when_kafka_cannot_be_reached(
    servers: Servers, database_url: str
) -> None:
    unreachable = KafkaSettings(bootstrap_servers="127.0.0.1:9", request_timeout_ms=1000)
    settings = settings_for(servers, unreachable, database_url, audit_timeout_s=0.5)
    citizen = random_national_id()
    async with running(settings, connected=False) as app, client_of(app) as client:
        code = await folded_request(app, citizen)
        started = time.monotonic()
        response = await client.post("/api/v1/tracking/lookup", json={"tracking_code": code, "national_id": citizen})
        assert time.monotonic() - started < 2.0
    assert_refused_without_data(response)


@pytest.mark.timeout(120)
async def test_a_lookup_kafka_does_not_acknowledge_is_refused_within_the_bound_then_served_again(
    servers: Servers, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    if servers.origin != "local":
        pytest.skip("freezing the broker is implemented for the local servers")
    settings = settings_for(servers, kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 't.db'}", audit_timeout_s=0.5)
    citizen = random_national_id()
    kafka_pid = int((Path(TEST_SERVER_ENV["KHEDMAT_LOCAL_STATE"]) / "kafka.pid").read_text().strip())
    await start_group_at_end(servers.kafka_bootstrap, settings.group_id)
    async with running(settings) as app, client_of(app) as client:
        body = {"tracking_code": await folded_request(app, citizen), "national_id": citizen}
        assert (await client.post("/api/v1/tracking/lookup", json=body)).status_code == 200
        os.kill(kafka_pid, signal.SIGSTOP)  # the broker stops answering: nothing is acknowledged
        try:
            started = time.monotonic()
            response = await client.post("/api/v1/tracking/lookup", json=body)
            waited = time.monotonic() - started
        finally:
            os.kill(kafka_pid, signal.SIGCONT)
        assert_refused_without_data(response)
        assert 0.5 <= waited < 1.5, waited
        async with asyncio.timeout(60):
            while (await client.post("/api/v1/tracking/lookup", json=body)).status_code != 200:
                await asyncio.sleep(0.5)
