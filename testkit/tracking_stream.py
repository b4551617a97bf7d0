"""Streams of whole request lifecycles for tracking's rebuild tests and benchmark: every path of the state
machine (approved and delivered, reviewed and rejected with a legal basis, corrected, cancelled, complained
about), with duplicates and refused events, interleaved across requests as producers would append them."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.envelope import cloudevent_headers, event_key, event_value
from shared.events import (
    AnyEvent,
    ComplaintFiled,
    ComplaintResolved,
    CorrectionSubmitted,
    Decision,
    DocumentRef,
    InquiryCompleted,
    InquiryOutcome,
    NextStep,
    RequestCancelled,
    RequestDecided,
    RequestEvent,
    ResultDelivered,
    VerificationCompleted,
    derived_event_id,
)
from testkit.inquiry_stream import submissions
from testkit.kafka_tools import partition_ids

SERVICE_ID = "no-criminal-record-certificate"
AGENCY = "judiciary"
RESULT = DocumentRef(kind="certificate", sha256="c" * 64, media_type="application/pdf", size_bytes=2048)


def lifecycle(submitted: RequestEvent, rng: random.Random) -> list[RequestEvent]:
    """One request's events in order, along a path picked by `rng` (5 events on average)."""
    assert submitted.event_type == "RequestSubmitted"
    at = submitted.occurred_at
    later = datetime.now(UTC) + timedelta(days=1)  # commands count: appended well before accept_by
    code = submitted.tracking_code

    def step(minutes: int) -> datetime:
        return at + timedelta(minutes=minutes)

    def inquiries(cause: str, minute: int) -> list[RequestEvent]:
        return [
            InquiryCompleted(
                event_id=derived_event_id(cause, "InquiryCompleted", inquiry),
                tracking_code=code,
                occurred_at=step(minute),
                caused_by=cause,
                inquiry=inquiry,
                agency=agency,
                outcome=InquiryOutcome.PASSED,
            )
            for inquiry, agency in (("identity", "civil-registry"), ("criminal-record", "judiciary"))
        ]

    def verified(cause: str, next_step: NextStep, minute: int) -> VerificationCompleted:
        explained = next_step is not NextStep.APPROVE
        return VerificationCompleted(
            event_id=derived_event_id(cause, "VerificationCompleted"),
            tracking_code=code,
            occurred_at=step(minute),
            caused_by=cause,
            next_step=next_step,
            reason_fa="نیاز به بررسی" if explained else None,
            reason_en="needs a look" if explained else None,
        )

    def decided(decision: Decision, minute: int) -> RequestDecided:
        return RequestDecided(
            tracking_code=code,
            occurred_at=step(minute),
            accept_by=later,
            agency=AGENCY,
            service_id=SERVICE_ID,
            decision=decision,
            reason_fa=None if decision is Decision.APPROVE else "سابقه دارد",
            reason_en=None if decision is Decision.APPROVE else "a record exists",
            legal_basis="قانون مجازات اسلامی، مادهٔ ۲۵" if decision is Decision.REJECT else None,
        )

    def delivered(minute: int) -> ResultDelivered:
        return ResultDelivered(
            tracking_code=code,
            occurred_at=step(minute),
            accept_by=later,
            agency=AGENCY,
            service_id=SERVICE_ID,
            result=RESULT,
            summary_fa="گواهی صادر شد",
            summary_en="The certificate was issued",
        )

    events: list[RequestEvent] = [submitted, *inquiries(submitted.event_id, 1)]
    path = rng.random()
    if path < 0.45:  # approved online, delivered
        events += [verified(submitted.event_id, NextStep.APPROVE, 2), delivered(60)]
    elif path < 0.65:  # reviewed: rejected with its legal basis, then complained about and answered
        events += [verified(submitted.event_id, NextStep.AGENCY_REVIEW, 2), decided(Decision.REJECT, 30)]
        events += [
            ComplaintFiled(tracking_code=code, occurred_at=step(90), accept_by=later, complaint_id="c1", text="اعتراض"),
            ComplaintResolved(
                tracking_code=code,
                occurred_at=step(120),
                accept_by=later,
                agency=AGENCY,
                service_id=SERVICE_ID,
                complaint_id="c1",
                resolution_fa="بررسی شد",
                resolution_en="reviewed",
            ),
        ]
    elif path < 0.85:  # corrected by the citizen, verified again, approved and delivered
        correction = CorrectionSubmitted(
            tracking_code=code, occurred_at=step(3000), accept_by=later, fields={"purpose": "employment"}
        )
        events += [verified(submitted.event_id, NextStep.NEEDS_CORRECTION, 2), correction]
        events += [*inquiries(correction.event_id, 3001), verified(correction.event_id, NextStep.APPROVE, 3002)]
        events.append(delivered(3100))
    elif path < 0.95:  # cancelled while in review; a late decision is refused
        events += [verified(submitted.event_id, NextStep.AGENCY_REVIEW, 2)]
        events += [RequestCancelled(tracking_code=code, occurred_at=step(10), accept_by=later)]
        events.append(decided(Decision.APPROVE, 20))
    # else: still waiting for verification
    if rng.random() < 0.02:  # a duplicate publication of some event
        events.insert(rng.randrange(1, len(events) + 1), events[rng.randrange(len(events))])
    return events


def lifecycles(requests: int, *, seed: int = 1) -> Iterator[RequestEvent]:
    """About 5 events per request, requests interleaved (each request's own events stay in order)."""
    rng = random.Random(seed)
    pending = [lifecycle(submitted, rng) for submitted in submissions(requests, SERVICE_ID)]
    cursors = [0] * len(pending)
    open_indexes = list(range(len(pending)))
    while open_indexes:
        slot = rng.randrange(len(open_indexes))
        index = open_indexes[slot]
        yield pending[index][cursors[index]]
        cursors[index] += 1
        if cursors[index] == len(pending[index]):
            open_indexes[slot] = open_indexes[-1]
            open_indexes.pop()


async def produce(bootstrap: str, topic: str, events: Iterable[AnyEvent]) -> int:
    """Publish the events as intake and inquiry do (CloudEvents, keyed by tracking code); returns how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024, acks="all")
    await producer.start()
    sent = 0
    try:
        pending = []
        for event in events:
            headers = [(k, v.encode()) for k, v in cloudevent_headers(event, source="/test").items()]
            pending.append(await producer.send(topic, event_value(event), key=event_key(event), headers=headers))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def raw_consume(bootstrap: str, topic: str) -> tuple[int, float]:
    """Read the whole topic with a bare aiokafka consumer (the baseline): (records, seconds)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        client_id=f"raw-{uuid.uuid4().hex[:6]}",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partition_ids(bootstrap, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        total = sum(ends.values())
        started = time.perf_counter()
        seen = 0
        while seen < total:
            fetched = await consumer.getmany(timeout_ms=500, max_records=2000)
            seen += sum(len(records) for records in fetched.values())
        return seen, time.perf_counter() - started
    finally:
        await consumer.stop()
