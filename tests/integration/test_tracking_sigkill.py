"""SIGKILL acceptance for tracking: killed mid-stream and restarted, it builds exactly the projection an
uninterrupted run builds, row by row (its offsets live in the projection's own transactions, and each
assigned partition resumes from them rather than from the group's commit, even one moved past them)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from shared.events import (
    Decision,
    NextStep,
    RequestDecided,
    RequestEvent,
    VerificationCompleted,
    derived_event_id,
)
from shared.kafka import ensure_topics
from shared.settings import KafkaSettings
from shared.topics import Topic, core_topics
from testkit.harness import Stack
from testkit.infra import Servers
from testkit.inquiry_stream import send_all, submissions
from testkit.kafka_tools import end_offsets, start_group_at_end

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

N = 300


def lifecycles(count: int) -> list[RequestEvent]:
    """Submitted, verified (approved or sent to review), and the reviewed half decided: interleaved."""
    made: list[RequestEvent] = []
    later = datetime.now(UTC) + timedelta(minutes=10)
    for index, submitted in enumerate(submissions(count)):
        verified = VerificationCompleted(
            event_id=derived_event_id(submitted.event_id, "VerificationCompleted"),
            tracking_code=submitted.tracking_code,
            caused_by=submitted.event_id,
            next_step=NextStep.APPROVE if index % 2 else NextStep.AGENCY_REVIEW,
            inquiries={},
        )
        made += [submitted, verified]
        if index % 2 == 0:
            made.append(
                RequestDecided(
                    tracking_code=submitted.tracking_code,
                    agency=submitted.agency,
                    service_id=submitted.service_id,
                    decision=Decision.REJECT if index % 4 == 0 else Decision.APPROVE,
                    reason_fa="دلیل",
                    reason_en="reason",
                    legal_basis="Civil Registration Act, art. 1",
                    accept_by=later,
                )
            )
    # Requests' events stay in order (one key, one partition); requests are interleaved with each other.
    return sorted(
        made,
        key=lambda event: (
            ["RequestSubmitted", "VerificationCompleted", "RequestDecided"].index(event.event_type),
            event.tracking_code,
        ),
    )


def folded(db: Path) -> int:
    """How many records of desk.requests the projection has folded (its stored next offsets)."""
    if not db.exists():
        return 0
    connection = sqlite3.connect(db, timeout=5)
    try:
        rows = connection.execute("SELECT next_offset FROM consumed_offset WHERE topic = ?", (Topic.REQUESTS,))
        return sum(next_offset for (next_offset,) in rows.fetchall())
    except sqlite3.OperationalError:
        return 0  # the tables are not created yet
    finally:
        connection.close()


def projection(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The projection's rows, in a stable order, without what differs between runs by nature (row ids, and
    the wall-clock times tracking itself stamps: outbox creation and publication)."""
    connection = sqlite3.connect(db, timeout=5)
    try:
        return {
            "request_status": connection.execute("SELECT * FROM request_status ORDER BY tracking_code").fetchall(),
            "timeline_entry": connection.execute(
                "SELECT tracking_code, event_id, event_type, occurred_at, applied, status_after, detail_fa, detail_en"
                " FROM timeline_entry ORDER BY tracking_code, occurred_at, event_id"
            ).fetchall(),
            "consumed_offset": connection.execute("SELECT * FROM consumed_offset ORDER BY topic, partition").fetchall(),
            "outbox": connection.execute(
                "SELECT topic, key, value, headers FROM outbox ORDER BY key, value"
            ).fetchall(),
        }
    finally:
        connection.close()


async def until(check: Any, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.005)


async def test_sigkilled_tracking_builds_the_same_projection_as_an_uninterrupted_run(
    servers: Servers, tmp_path: Path
) -> None:
    bootstrap = servers.kafka_bootstrap
    await ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), core_topics())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await send_all(producer, lifecycles(N))  # type: ignore[arg-type]
    finally:
        await producer.stop()
    total = sum((await end_offsets(bootstrap)).values())

    # Each run: a fresh database, and a group that has committed nothing, like a new deployment.
    steady = Stack(servers, tmp_path / "steady", group_prefix=f"steady-{uuid.uuid4().hex[:8]}")
    steady_db = tmp_path / "steady" / "tracking.db"
    steady.start("tracking")
    try:
        await until(lambda: folded(steady_db) >= total, 180)
    finally:
        steady.stop_all()

    group_prefix = f"killed-{uuid.uuid4().hex[:8]}"
    killed = Stack(servers, tmp_path / "killed", group_prefix=group_prefix)
    killed_db = tmp_path / "killed" / "tracking.db"
    killed.start("tracking")
    try:
        await until(lambda: folded(killed_db) >= total // 2, 180)
        await asyncio.to_thread(killed.signal, "tracking", signal.SIGKILL)
        at_kill = folded(killed_db)
        assert at_kill < total, "the kill must land mid-stream"
        # Worse than a crash: the group's committed offsets are now past everything (as after an offset reset,
        # or with a database restored from an older backup). Only the projection's own offsets know better.
        await start_group_at_end(bootstrap, f"{group_prefix}-tracking")
        killed.start("tracking")
        await until(lambda: folded(killed_db) >= total, 180)
    finally:
        killed.stop_all()

    print(f"\nfolded {total} records; killed after {at_kill}, resumed from the projection's offsets")
    expected, actual = projection(steady_db), projection(killed_db)
    for table in expected:
        assert actual[table] == expected[table], f"{table} differs after the kill"
    assert len(expected["request_status"]) >= N
