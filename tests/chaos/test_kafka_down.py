"""With Kafka stopped, intake refuses with 503 + Retry-After and nothing is half-recorded; it recovers by itself.

The idempotent producer never drops a batch, so the refused submission may still reach the log once Kafka is
back. It then carries a broker append time later than its `accept_by`, and every consumer treats it as void:
tracking never shows it, inquiry never runs it, so no citizen sees a request they were told was refused.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.events import LOG_APPEND_TIME_TYPE, RequestSubmitted, parse_request_event
from shared.topics import Topic
from testkit.data import submission
from testkit.harness import Stack
from testkit.infra import Servers, start_local_kafka, stop_local_kafka
from testkit.kafka_tools import read_topic


@pytest.fixture
def intake_only(servers: Servers, tmp_path: Path) -> Iterator[Stack]:
    if servers.origin != "local":
        pytest.skip("stopping Kafka is implemented for the local servers; containers get a new port on restart")
    stack = Stack(servers, tmp_path, group_prefix="chaos")
    # tracking needs only what this test submits: skip the earlier tests' events rather than fold them all.
    stack.start_groups_at_end()
    stack.start("intake")
    stack.start("tracking")
    stack.wait_ready(("intake", "tracking"))
    try:
        yield stack
    finally:
        start_local_kafka()
        stack.stop_all()


def lookup_status(stack: Stack, code: str, nid: str) -> int:
    response = httpx.post(
        stack.url("tracking") + "/api/v1/tracking/lookup", json={"tracking_code": code, "national_id": nid}
    )
    return response.status_code


def test_submission_with_kafka_stopped_answers_503_and_records_nothing(intake_only: Stack, servers: Servers) -> None:
    url = intake_only.url("intake") + "/api/v1/requests"
    marker = f"chaos-{uuid.uuid4().hex}"
    stop_local_kafka()
    started = time.monotonic()
    refused_body = submission(reason=marker)
    refused = httpx.post(url, json=refused_body, timeout=30)
    waited = time.monotonic() - started

    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) > 0
    problem = refused.json()
    assert problem["status"] == 503 and problem["title_fa"] and problem["detail"]
    print(f"503 after {waited:.1f}s with Kafka down")

    start_local_kafka()
    # Intake recovers without a restart; the refused submission must never show up on the topic, even late.
    deadline = time.monotonic() + 60
    while True:
        accepted_body = submission(reason="after-recovery")
        accepted = httpx.post(url, json=accepted_body, timeout=30)
        if accepted.status_code == 202 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert accepted.status_code == 202, accepted.text
    accepted_code = accepted.json()["tracking_code"]
    nid = refused_body["applicant"]["national_id"]

    records = asyncio.run(read_topic(servers.kafka_bootstrap, Topic.REQUESTS.value))
    assert any(accepted_code.encode() in record.value for record in records)
    late = [parse_request_event(record.value) for record in records if marker.encode() in record.value]
    late_records = [record for record in records if marker.encode() in record.value]
    for event, record in zip(late, late_records, strict=True):
        assert isinstance(event, RequestSubmitted)
        assert record.timestamp_type == LOG_APPEND_TIME_TYPE
        assert not event.counts(timestamp_ms=record.timestamp, timestamp_type=record.timestamp_type)
    print(f"refused submission delivered late by the producer: {len(late)} time(s), void everywhere")

    accepted_nid = accepted_body["applicant"]["national_id"]
    deadline = time.monotonic() + 30
    while lookup_status(intake_only, accepted_code, accepted_nid) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lookup_status(intake_only, accepted_code, accepted_nid) == 200
    time.sleep(2)  # the late record sits before the accepted one; give tracking's other partitions a moment
    for event in late:
        assert lookup_status(intake_only, event.tracking_code, nid) == 404
