"""SIGKILL acceptance: inquiry killed mid-stream re-publishes recorded outcomes and never asks an agency twice."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.events import derived_event_id
from shared.topics import Topic
from testkit.harness import Stack
from testkit.infra import Servers
from testkit.inquiry_stream import Follower, agency_stats, send_all, submissions
from testkit.kafka_tools import end_offsets, read_topic, start_group_at_end

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(240)]

N = 200
KILL_AFTER = 60
BOUND_S = 120


async def registry_calls(stack: Stack) -> int:
    return (await agency_stats(stack.url("sandbox")))["civil-registry"]["calls"]


def recorded(db: Path, codes: set[str], *, published: bool = False) -> int:
    """How many of our submissions have a recorded verification in inquiry's file (WAL: readers never block it);
    with `published`, only those marked as acknowledged by Kafka."""
    query = "SELECT v.tracking_code FROM inquiry_verification v"
    if published:
        query += " JOIN inquiry_published p ON p.cause_event_id = v.cause_event_id"
    connection = sqlite3.connect(db, timeout=5)
    try:
        rows = connection.execute(query).fetchall()
    finally:
        connection.close()
    return sum(1 for (code,) in rows if code in codes)


async def until_recorded(db: Path, codes: set[str], count: int, timeout_s: float) -> None:
    """Poll inquiry's file closely: a kill right after a commit most likely lands before that outcome's publish."""
    async with asyncio.timeout(timeout_s):
        while recorded(db, codes) < count:
            await asyncio.sleep(0.002)


async def test_sigkilled_inquiry_neither_loses_nor_re_verifies_a_submission(servers: Servers, tmp_path: Path) -> None:
    bootstrap = servers.kafka_bootstrap
    db = tmp_path / "inquiry.db"
    group_prefix = f"redelivery-{uuid.uuid4().hex[:8]}"
    stack = Stack(
        servers,
        tmp_path / "stack",
        group_prefix=group_prefix,
        extra_env={"INQUIRY_DATABASE_URL": f"sqlite+aiosqlite:///{db}"},
    )
    events = submissions(N)
    codes = {event.tracking_code for event in events}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        # The fresh group starts after other tests' submissions: only ours are counted, and none re-verified.
        await start_group_at_end(bootstrap, f"{group_prefix}-inquiry")
        stack.start("sandbox")
        stack.start("inquiry")
        await asyncio.to_thread(stack.wait_ready, ("sandbox", "inquiry"), 60)
        async with httpx.AsyncClient(base_url=stack.url("sandbox")) as control:
            # A little latency per call spreads the run over seconds, so the kill lands mid-stream.
            (await control.put("/control/faults/civil-registry", json={"latency_ms": 15})).raise_for_status()
            (await control.delete("/control/stats")).raise_for_status()

        async with asyncio.timeout(BOUND_S):
            start = await end_offsets(bootstrap)
            with Follower(bootstrap, start, codes) as seen:
                await producer.start()
                await send_all(producer, events)

                await until_recorded(db, codes, KILL_AFTER, timeout_s=60)
                await asyncio.to_thread(stack.signal, "inquiry", signal.SIGKILL)
                calls_at_kill = await registry_calls(stack)
                recorded_at_kill = recorded(db, codes)
                marked_at_kill = recorded(db, codes, published=True)
                in_flight = calls_at_kill - recorded_at_kill
                await asyncio.sleep(1)  # the follower catches up with what the killed process had published
                published_at_kill = len(seen.verification_ids)
                # Recorded, killed before publishing: published after the restart, from the record alone.
                unpublished_at_kill = recorded_at_kill - published_at_kill
                assert published_at_kill <= recorded_at_kill < N, "the kill must land mid-stream"

                restarted = time.monotonic()
                stack.start("inquiry")
                await asyncio.to_thread(stack.wait_ready, ("inquiry",), 60)
                await seen.until_verified(N, timeout_s=BOUND_S)
                resumed_s = time.monotonic() - restarted
            calls_total = await registry_calls(stack)

            records = await read_topic(bootstrap, Topic.REQUESTS)
        verifications: dict[str, set[str]] = defaultdict(set)
        copies = 0
        for record in records:
            if record.key is None or record.key.decode() not in codes:
                continue  # other tests' records, poison ones among them
            body: dict[str, Any] = json.loads(record.value)
            if body.get("event_type") == "VerificationCompleted" and body["tracking_code"] in codes:
                verifications[body["tracking_code"]].add(body["event_id"])
                copies += 1

        print(
            f"\nN={N} recorded_at_kill={recorded_at_kill} published_at_kill={published_at_kill} "
            f"recorded_but_unpublished_at_kill={unpublished_at_kill} "
            f"registry_calls_at_kill={calls_at_kill} in_flight_at_kill={in_flight} "
            f"registry_calls_total={calls_total} (bound N+in_flight={N + in_flight}) "
            f"calls_after_restart={calls_total - calls_at_kill} (not recorded at kill: {N - recorded_at_kill}) "
            f"marked_published_at_kill={marked_at_kill} "
            f"VerificationCompleted records={copies} distinct={sum(map(len, verifications.values()))} "
            f"resumed_in={resumed_s:.1f}s"
        )
        assert set(verifications) == codes, f"lost: {len(codes - set(verifications))}"
        two_ids = {code: ids for code, ids in verifications.items() if len(ids) != 1}
        assert not two_ids, f"submissions with different VerificationCompleted ids: {two_ids}"
        for event in events:
            assert verifications[event.tracking_code] == {derived_event_id(event.event_id, "VerificationCompleted")}
        assert in_flight >= 0
        # No submission whose outcome was recorded before the kill reached the civil registry again.
        assert calls_total - calls_at_kill <= N - recorded_at_kill
        assert calls_total <= N + in_flight
        # A second copy (same id) is possible only for a verification recorded but not marked published at the
        # kill; every other redelivered record publishes nothing.
        assert copies - N <= recorded_at_kill - marked_at_kill
    finally:
        await producer.stop()
        stack.stop_all()
