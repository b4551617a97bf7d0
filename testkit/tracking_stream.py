"""Streams of whole request lifecycles for tracking's rebuild tests and benchmark: every path of the state
machine (approved and delivered, reviewed and rejected with a legal basis, corrected, cancelled, complained
about), with duplicates and refused events, interleaved across requests as producers would append them."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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


@dataclass(frozen=True)
class _Request:
    """Makes the events of one submitted request, each dated some minutes after its submission."""

    code: str
    at: datetime
    # Commands count only when appended before accept_by: give them well over a test's length.
    later: datetime

    def step(self, minutes: int) -> datetime:
        return self.at + timedelta(minutes=minutes)

    def by_the_agency(self, minute: int) -> dict[str, Any]:
        """What every command of the agency on this request carries."""
        return {
            "tracking_code": self.code,
            "occurred_at": self.step(minute),
            "accept_by": self.later,
            "agency": AGENCY,
            "service_id": SERVICE_ID,
        }

    def inquiries(self, cause: str, minute: int) -> list[RequestEvent]:
        """Both inquiries of the certificate, passed, in answer to cause."""
        return [
            InquiryCompleted(
                event_id=derived_event_id(cause, "InquiryCompleted", inquiry),
                tracking_code=self.code,
                occurred_at=self.step(minute),
                caused_by=cause,
                inquiry=inquiry,
                agency=agency,
                outcome=InquiryOutcome.PASSED,
            )
            for inquiry, agency in (("identity", "civil-registry"), ("criminal-record", "judiciary"))
        ]

    def verified(self, cause: str, next_step: NextStep, minute: int) -> VerificationCompleted:
        """The verdict on cause's inquiries, explained unless it approves."""
        explained = next_step is not NextStep.APPROVE
        return VerificationCompleted(
            event_id=derived_event_id(cause, "VerificationCompleted"),
            tracking_code=self.code,
            occurred_at=self.step(minute),
            caused_by=cause,
            next_step=next_step,
            reason_fa="نیاز به بررسی" if explained else None,
            reason_en="needs a look" if explained else None,
        )

    def decided(self, decision: Decision, minute: int) -> RequestDecided:
        """The agency's decision, with its reason and (for a rejection) its legal basis."""
        return RequestDecided(
            **self.by_the_agency(minute),
            decision=decision,
            reason_fa=None if decision is Decision.APPROVE else "سابقه دارد",
            reason_en=None if decision is Decision.APPROVE else "a record exists",
            legal_basis="قانون مجازات اسلامی، مادهٔ ۲۵" if decision is Decision.REJECT else None,
        )

    def delivered(self, minute: int) -> ResultDelivered:
        """The certificate handed over."""
        return ResultDelivered(
            **self.by_the_agency(minute),
            result=RESULT,
            summary_fa="گواهی صادر شد",
            summary_en="The certificate was issued",
        )

    def complained(self) -> list[RequestEvent]:
        """A complaint filed and the agency's answer to it."""
        return [
            ComplaintFiled(
                tracking_code=self.code,
                occurred_at=self.step(90),
                accept_by=self.later,
                complaint_id="c1",
                text="اعتراض",
            ),
            ComplaintResolved(
                **self.by_the_agency(120),
                complaint_id="c1",
                resolution_fa="بررسی شد",
                resolution_en="reviewed",
            ),
        ]

    def corrected(self, cause: str) -> list[RequestEvent]:
        """Sent back for correction, corrected by the citizen, verified again, approved and delivered."""
        correction = CorrectionSubmitted(
            tracking_code=self.code, occurred_at=self.step(3000), accept_by=self.later, fields={"purpose": "employment"}
        )
        return [
            self.verified(cause, NextStep.NEEDS_CORRECTION, 2),
            correction,
            *self.inquiries(correction.event_id, 3001),
            self.verified(correction.event_id, NextStep.APPROVE, 3002),
            self.delivered(3100),
        ]

    def after_inquiries(self, cause: str, path: float) -> list[RequestEvent]:
        """The events after the first inquiries along the path that `path` (in [0, 1)) picks."""
        if path < 0.45:  # approved online, delivered
            return [self.verified(cause, NextStep.APPROVE, 2), self.delivered(60)]
        if path < 0.65:  # reviewed: rejected with its legal basis, then complained about and answered
            return [
                self.verified(cause, NextStep.AGENCY_REVIEW, 2),
                self.decided(Decision.REJECT, 30),
                *self.complained(),
            ]
        if path < 0.85:  # corrected by the citizen, verified again, approved and delivered
            return self.corrected(cause)
        if path < 0.95:  # cancelled while in review; a late decision is refused
            return [
                self.verified(cause, NextStep.AGENCY_REVIEW, 2),
                RequestCancelled(tracking_code=self.code, occurred_at=self.step(10), accept_by=self.later),
                self.decided(Decision.APPROVE, 20),
            ]
        return []  # still waiting for verification


def lifecycle(submitted: RequestEvent, rng: random.Random) -> list[RequestEvent]:
    """One request's events in order, along a path picked by `rng` (5 events on average)."""
    assert submitted.event_type == "RequestSubmitted"
    request = _Request(submitted.tracking_code, submitted.occurred_at, datetime.now(UTC) + timedelta(days=1))
    events: list[RequestEvent] = [submitted, *request.inquiries(submitted.event_id, 1)]
    events += request.after_inquiries(submitted.event_id, rng.random())
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
