"""tracking as a process on real Kafka and Redis: hot lookups come from Redis and a change is visible at once
(the fold, and the keeping of a notification's outcome, delete the cached answer), and a Server-Sent Events
stream of one request moves on each change, woken by Redis rather than by its poll."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.tracking.domain_folding import status_change_id
from shared.domain.state_machine import RequestState
from shared.events import (
    NextStep,
    NotificationOutcome,
    RequestEvent,
    VerificationCompleted,
    derived_event_id,
    notification_outcome_id,
)
from testkit.harness import Stack
from testkit.infra import Servers
from testkit.inquiry_stream import submissions
from testkit.tracking_stream import produce

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]


async def cache_reads(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("/metrics")).text
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "khedmat_tracking_lookup_cache"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


async def next_event(lines: Any) -> dict[str, Any]:
    """The next SSE `status` event's data (keep-alive comments skipped)."""
    event: dict[str, str] = {}
    async for line in lines:
        if line.startswith(":"):
            continue
        if not line:
            if event.get("event") == "status":
                return dict(json.loads(event["data"]))
            event = {}
            continue
        field, _, value = line.partition(":")
        event[field] = value.lstrip()
    raise AssertionError("the stream ended")


async def test_cached_lookups_see_changes_at_once_and_a_stream_follows_the_request(
    servers: Servers, tmp_path: Path
) -> None:
    stack = Stack(servers, tmp_path, group_prefix=f"live-{uuid.uuid4().hex[:8]}")
    stack.processes["tracking"].env.update(
        {
            # Long enough that only the invalidation on change, and only the Redis notice, can explain what we see.
            "TRACKING_LOOKUP_CACHE_TTL_S": "3600",
            "TRACKING_STREAM_POLL_S": "60",
        }
    )
    await asyncio.to_thread(stack.start_groups_at_end)
    stack.start("tracking")
    try:
        await asyncio.to_thread(stack.wait_ready, ("tracking",))
        [request] = submissions(1)
        await produce(servers.kafka_bootstrap, "desk.requests", [request])
        body = {"tracking_code": request.tracking_code, "national_id": request.applicant.national_id}
        async with httpx.AsyncClient(base_url=stack.url("tracking"), timeout=10) as client:
            async with asyncio.timeout(30):
                while (await client.post("/api/v1/tracking/lookup", json=body)).status_code != 200:
                    await asyncio.sleep(0.3)
            before = await cache_reads(client)
            for _ in range(5):
                assert (await client.post("/api/v1/tracking/lookup", json=body)).json()["status"] == "SUBMITTED"
            after = await cache_reads(client)
            assert after.get("hit", 0) - before.get("hit", 0) == 5  # hot: answered from Redis

            async with client.stream("POST", "/api/v1/tracking/events", json=body, timeout=None) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.aiter_lines()
                first = await asyncio.wait_for(next_event(lines), 10)
                assert first["status"] == "SUBMITTED"

                verified: RequestEvent = VerificationCompleted(
                    event_id=derived_event_id(request.event_id, "VerificationCompleted"),
                    tracking_code=request.tracking_code,
                    occurred_at=datetime.now(UTC),
                    caused_by=request.event_id,
                    next_step=NextStep.AGENCY_REVIEW,
                    reason_fa="بررسی کارشناس",
                    reason_en="an officer's review",
                )
                await produce(servers.kafka_bootstrap, "desk.requests", [verified])
                # Well before the 60 s poll: Redis told the stream.
                moved = await asyncio.wait_for(next_event(lines), 15)
                assert moved["status"] == "IN_REVIEW"
                assert [entry["event_type"] for entry in moved["timeline"]] == [
                    "RequestSubmitted",
                    "VerificationCompleted",
                ]
                assert moved["notifications"] == []

                # notify's outcome for that change: the stream moves again, on Redis's notice.
                in_review = status_change_id(verified.event_id)
                told = NotificationOutcome(
                    event_id=notification_outcome_id(in_review, "sms", "delivered"),
                    tracking_code=request.tracking_code,
                    status_event_id=in_review,
                    status=RequestState.IN_REVIEW,
                    channel="sms",
                    state="delivered",
                )
                await produce(servers.kafka_bootstrap, "desk.notifications", [told])
                notified = await asyncio.wait_for(next_event(lines), 30)
                assert [(item["status"], item["channel"], item["state"]) for item in notified["notifications"]] == [
                    ("IN_REVIEW", "sms", "delivered")
                ]

            # The cached answers were dropped on each change: the lookup sees both at once.
            changed = (await client.post("/api/v1/tracking/lookup", json=body)).json()
            assert changed["status"] == "IN_REVIEW"
            assert [item["state"] for item in changed["notifications"]] == ["delivered"]

            wrong = {**body, "national_id": "0000000000"}
            streamed_wrong = await client.post("/api/v1/tracking/events", json=wrong)
            assert streamed_wrong.status_code == 404
            assert streamed_wrong.headers["content-type"] == "application/problem+json"
    finally:
        await asyncio.to_thread(stack.stop_all)
