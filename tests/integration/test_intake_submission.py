"""intake's submission path on real Kafka and real Redis: idempotency keys and rate limits end to end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.settings import KafkaSettings, RedisSettings
from testkit.data import submission
from testkit.infra import Servers


@pytest.fixture
async def intake(servers: Servers, kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[FastAPI]:
    app = create_app(
        IntakeSettings(
            kafka=kafka_settings,
            redis=RedisSettings(url=servers.redis_url),
            blob_dir=tmp_path / "blobs",
            # Unique per test run so counters left in Redis by an earlier run do not interfere.
            rate_limit_per_client="1000/minute",
            rate_limit_per_national_id="3/hour",
            replica_id=14,
        ),
        tracer_provider=TracerProvider(),
    )
    async with app.router.lifespan_context(app):
        await app.state.bus.wait(60)
        yield app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    # A distinct client address per test keeps the per-client counters of other tests out of the way.
    transport = httpx.ASGITransport(app=app, client=(f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}", 1))
    return httpx.AsyncClient(transport=transport, base_url="http://intake", timeout=30)


async def test_a_retried_submission_with_its_idempotency_key_gets_the_same_tracking_code(intake: FastAPI) -> None:
    body = submission()
    key = str(uuid.uuid4())
    async with client_for(intake) as client:
        first = await client.post("/api/v1/requests", json=body, headers={"Idempotency-Key": key})
        second = await client.post("/api/v1/requests", json=body, headers={"Idempotency-Key": key})
        other = await client.post(
            "/api/v1/requests", json={**body, "fields": {"reason": "another"}}, headers={"Idempotency-Key": key}
        )
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["tracking_code"] == second.json()["tracking_code"]
    assert other.status_code == 422
    assert other.json()["type"].endswith("idempotency-key-reused")


async def test_submissions_for_one_national_id_are_limited_across_clients_with_429(intake: FastAPI) -> None:
    body = submission()
    statuses = []
    for _ in range(4):
        async with client_for(intake) as client:  # a new address each time: the limit follows the person
            statuses.append(await client.post("/api/v1/requests", json=body))
    assert [r.status_code for r in statuses[:3]] == [202, 202, 202]
    limited = statuses[3]
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert int(limited.headers["retry-after"]) >= 1
