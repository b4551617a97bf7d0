"""tracking: folding request events into the projection (exactly once in effect), lookups and the outbox relay."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from services.tracking.consumers import decode
from services.tracking.domain_terms import catalog_terms
from services.tracking.service import Delivered, Position, Projector, Sessions, fold_event, lookup, national_id_digest
from services.tracking.service_outbox import OutboxRelay
from services.tracking.store import TABLES, ConsumedOffset, OutboxMessage, RequestRecord, TimelineEntry
from shared.catalog import load_catalog
from shared.db import make_engine, make_sessionmaker
from shared.domain.identity import make_valid_national_id
from shared.domain.state_machine import RequestState
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.domain.working_days import load_calendar
from shared.envelope import cloudevent_headers, event_key, event_value
from shared.events import (
    LOG_APPEND_TIME_TYPE,
    Applicant,
    InquiryCompleted,
    InquiryOutcome,
    NextStep,
    RequestEvent,
    RequestSubmitted,
    StatusChanged,
    VerificationCompleted,
    derived_event_id,
    parse_status_event,
)
from shared.kafka import PermanentError
from shared.topics import Topic
from testkit.events import answering

LOOKUP_KEY = b"lookup-key-for-tests-only"
NATIONAL_ID = make_valid_national_id("001234567")
OTHER_NATIONAL_ID = make_valid_national_id("001234568")
CODES = TrackingCodeGenerator(key=b"k" * 32, replica_id=1)
TOPIC = Topic.REQUESTS.value
TERMS = catalog_terms(load_catalog())
CALENDAR = load_calendar()
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


# --- events ---------------------------------------------------------------------------------------


def submitted(code: str | None = None, *, national_id: str = NATIONAL_ID, at: datetime = T0) -> RequestSubmitted:
    return RequestSubmitted(
        tracking_code=code or CODES.next_code(),
        occurred_at=at,
        service_id="birth-certificate-duplicate",
        catalog_version=1,
        agency="civil-registry",
        applicant=Applicant(national_id=national_id, mobile="09121234567", birth_date=date(1990, 1, 31)),
        fields={"reason": "lost"},
        accept_by=at + timedelta(seconds=5),
    )


def inquiry_done(
    cause: RequestSubmitted, *, outcome: InquiryOutcome = InquiryOutcome.PASSED, inquiry: str = "identity"
) -> InquiryCompleted:
    return InquiryCompleted(
        **answering(cause, "InquiryCompleted", inquiry),
        occurred_at=cause.occurred_at + timedelta(seconds=1),
        inquiry=inquiry,
        agency="civil-registry",
        outcome=outcome,
    )


def verified(cause: RequestSubmitted, next_step: NextStep = NextStep.APPROVE) -> VerificationCompleted:
    return VerificationCompleted(
        **answering(cause, "VerificationCompleted"),
        occurred_at=cause.occurred_at + timedelta(seconds=2),
        next_step=next_step,
        reason_fa="دلیل" if next_step is not NextStep.APPROVE else None,
        reason_en="a reason" if next_step is not NextStep.APPROVE else None,
    )


def lifecycle(next_step: NextStep = NextStep.APPROVE) -> list[RequestEvent]:
    cause = submitted()
    return [cause, inquiry_done(cause), verified(cause, next_step)]


# --- the database ---------------------------------------------------------------------------------


async def new_database(path: Path) -> tuple[AsyncEngine, Sessions]:
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=TABLES))
    return engine, make_sessionmaker(engine)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    engine, made = await new_database(tmp_path / "tracking.db")
    yield made
    await engine.dispose()


@dataclass
class Feed:
    """Folds events as one partition would deliver them: consecutive offsets."""

    sessions: Sessions
    partition: int = 0
    next_offset: int = 0

    async def fold(self, *events: RequestEvent, void: bool = False) -> StatusChanged | None:
        """Fold the events at the next offsets; the status change of the last one, if it made one."""
        change = None
        for event in events:
            change = await self.at(self.next_offset, event, void=void)
            self.next_offset += 1
        return change

    async def at(self, offset: int, event: RequestEvent, *, void: bool = False) -> StatusChanged | None:
        return await fold_event(
            sessions=self.sessions,
            event=event,
            position=Position(TOPIC, self.partition, offset),
            lookup_key=LOOKUP_KEY,
            terms_of=TERMS,
            calendar=CALENDAR,
            void=void,
            now=lambda: T0,
        )

    async def record(self, code: str) -> RequestRecord:
        record = await record_of(self.sessions, code)
        assert record is not None
        return record

    async def timeline(self, code: str) -> list[TimelineEntry]:
        return await timeline_of(self.sessions, code)

    async def outbox(self) -> list[StatusChanged]:
        """The status changes waiting in the outbox, oldest first."""
        return [parse_status_event(row.value.encode()) for row in await outbox(self.sessions)]


@pytest.fixture
def feed(sessions: Sessions) -> Feed:
    return Feed(sessions)


Snapshot = dict[str, list[dict[str, Any]]]


async def snapshot(sessions: Sessions) -> Snapshot:
    """Every row of every table, for before/after comparisons."""
    found: Snapshot = {}
    async with sessions() as session:
        for model, order in (
            (RequestRecord, RequestRecord.tracking_code),
            (TimelineEntry, TimelineEntry.seq),
            (ConsumedOffset, ConsumedOffset.partition),
            (OutboxMessage, OutboxMessage.id),
        ):
            first: Any = TimelineEntry.tracking_code if model is TimelineEntry else order
            rows = await session.scalars(select(model).order_by(first, order))  # type: ignore[arg-type]
            found[model.__tablename__] = [row.model_dump() for row in rows]
    return found


def without_offsets(state: Snapshot) -> Snapshot:
    return {table: rows for table, rows in state.items() if table != "consumed_offset"}


async def record_of(sessions: Sessions, code: str) -> RequestRecord | None:
    async with sessions() as session:
        return await session.get(RequestRecord, code)


async def timeline_of(sessions: Sessions, code: str) -> list[TimelineEntry]:
    async with sessions() as session:
        query = select(TimelineEntry).where(TimelineEntry.tracking_code == code).order_by(TimelineEntry.seq)  # type: ignore[arg-type]
        return list(await session.scalars(query))


async def outbox(sessions: Sessions) -> list[OutboxMessage]:
    async with sessions() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))  # type: ignore[arg-type]


async def next_offset(sessions: Sessions, partition: int = 0) -> int | None:
    async with sessions() as session:
        stored = await session.get(ConsumedOffset, (TOPIC, partition))
        return None if stored is None else stored.next_offset


# --- folding one request --------------------------------------------------------------------------


async def test_approved_request_has_three_timeline_entries_and_three_status_changes(
    feed: Feed, sessions: Sessions
) -> None:
    events = lifecycle(NextStep.APPROVE)
    changes = [await feed.fold(event) for event in events]

    code = events[0].tracking_code
    record = await record_of(sessions, code)
    assert record is not None
    assert record.status == RequestState.APPROVED.value
    assert record.service_id == "birth-certificate-duplicate"
    assert record.agency == "civil-registry"
    assert record.submitted_at == T0
    assert record.updated_at == events[-1].occurred_at
    assert (record.waiting_for_fa, record.waiting_for_en) == (None, None)

    timeline = await timeline_of(sessions, code)
    assert [(e.event_id, e.event_type, e.applied, e.status_after) for e in timeline] == [
        (events[0].event_id, "RequestSubmitted", True, "SUBMITTED"),
        (events[1].event_id, "InquiryCompleted", True, "VERIFYING"),
        (events[2].event_id, "VerificationCompleted", True, "APPROVED"),
    ]

    rows = await outbox(sessions)
    published = [parse_status_event(row.value.encode()) for row in rows]
    assert [(c.previous_status, c.status) for c in published] == [
        (None, RequestState.SUBMITTED),
        (RequestState.SUBMITTED, RequestState.VERIFYING),
        (RequestState.VERIFYING, RequestState.APPROVED),
    ]
    assert [c.event_id for c in published] == [derived_event_id(e.event_id, "StatusChanged") for e in events]
    assert [c.caused_by for c in published] == [e.event_id for e in events]
    assert [c.caused_by_type for c in published] == [e.event_type for e in events]
    assert published == changes
    assert all(row.published_at is None for row in rows)
    assert all(row.topic == Topic.STATUS.value and row.key == code for row in rows)


async def test_outbox_rows_carry_cloudevent_headers_and_no_personal_data(feed: Feed, sessions: Sessions) -> None:
    await feed.fold(*lifecycle())
    for row in await outbox(sessions):
        change = parse_status_event(row.value.encode())
        assert json.loads(row.headers) == cloudevent_headers(change, source="/khedmat/tracking")
        assert NATIONAL_ID not in row.value + row.headers + row.key
        assert "09121234567" not in row.value + row.headers + row.key
        assert isinstance(json.loads(row.trace_context), dict)


async def test_national_id_is_stored_only_as_a_keyed_digest(feed: Feed, sessions: Sessions) -> None:
    event = submitted()
    await feed.fold(event)
    record = await record_of(sessions, event.tracking_code)
    assert record is not None
    assert record.national_id_digest == national_id_digest(NATIONAL_ID, LOOKUP_KEY)
    assert NATIONAL_ID not in json.dumps(await snapshot(sessions), default=str)


async def test_status_change_ids_are_the_same_in_another_projection(tmp_path: Path) -> None:
    events = lifecycle(NextStep.NEEDS_CORRECTION)
    ids = []
    for name in ("one.db", "two.db"):
        engine, sessions = await new_database(tmp_path / name)
        feed = Feed(sessions)
        await feed.fold(*events)
        ids.append([parse_status_event(row.value.encode()).event_id for row in await outbox(sessions)])
        await engine.dispose()
    assert ids[0] == ids[1]
    assert len(set(ids[0])) == 3


@pytest.mark.parametrize(
    ("next_step", "status", "waiting_en"),
    [
        (NextStep.APPROVE, RequestState.APPROVED, None),
        (NextStep.AGENCY_REVIEW, RequestState.IN_REVIEW, "Waiting for the agency's review"),
        (NextStep.NEEDS_CORRECTION, RequestState.NEEDS_CORRECTION, "Waiting for your correction"),
        (NextStep.REJECT, RequestState.REJECTED, None),
    ],
)
async def test_verification_moves_the_request_to_its_next_step(
    feed: Feed, sessions: Sessions, next_step: NextStep, status: RequestState, waiting_en: str | None
) -> None:
    events = lifecycle(next_step)
    await feed.fold(*events)
    record = await record_of(sessions, events[0].tracking_code)
    assert record is not None
    assert record.status == status.value
    assert record.waiting_for_en == waiting_en
    last = parse_status_event((await outbox(sessions))[-1].value.encode())
    assert last.status is status
    if next_step is not NextStep.APPROVE:
        assert last.reason_en == "a reason"


async def test_submission_waits_for_the_inquiries(feed: Feed, sessions: Sessions) -> None:
    event = submitted()
    change = await feed.fold(event)
    assert change is not None and change.status is RequestState.SUBMITTED
    record = await record_of(sessions, event.tracking_code)
    assert record is not None
    # The catalog names the agencies the service's inquiries go to.
    assert record.waiting_for_en == "Waiting for the inquiry answer from National Organization for Civil Registration"
    assert record.waiting_for_fa is not None and "ثبت احوال" in record.waiting_for_fa
    assert record.waiting_since == event.occurred_at


async def test_second_inquiry_keeps_verifying_without_a_status_change(feed: Feed, sessions: Sessions) -> None:
    cause = submitted()
    await feed.fold(cause)
    assert await feed.fold(inquiry_done(cause, inquiry="identity")) is not None
    assert await feed.fold(inquiry_done(cause, inquiry="address")) is None
    timeline = await timeline_of(sessions, cause.tracking_code)
    assert [(e.applied, e.status_after) for e in timeline] == [
        (True, "SUBMITTED"),
        (True, "VERIFYING"),
        (True, "VERIFYING"),
    ]
    assert len(await outbox(sessions)) == 2


# --- exactly once in effect -----------------------------------------------------------------------


async def test_redelivered_offset_changes_nothing(feed: Feed, sessions: Sessions) -> None:
    events = lifecycle()
    await feed.fold(*events)
    before = await snapshot(sessions)
    for offset, event in enumerate(events):
        assert await feed.at(offset, event) is None
    assert await snapshot(sessions) == before


async def test_redelivered_offset_is_skipped_even_with_another_event(feed: Feed, sessions: Sessions) -> None:
    events = lifecycle()
    await feed.fold(*events)
    before = await snapshot(sessions)
    assert await feed.at(1, submitted()) is None
    assert await snapshot(sessions) == before


async def test_duplicate_publication_at_a_new_offset_changes_nothing(feed: Feed, sessions: Sessions) -> None:
    events = lifecycle()
    await feed.fold(*events)
    before = await snapshot(sessions)
    for event in events:
        assert await feed.fold(event) is None
    after = await snapshot(sessions)
    assert without_offsets(after) == without_offsets(before)
    assert await next_offset(sessions) == 2 * len(events)


async def test_duplicate_submission_does_not_resubmit(feed: Feed, sessions: Sessions) -> None:
    cause = submitted()
    await feed.fold(cause, inquiry_done(cause), cause)
    record = await record_of(sessions, cause.tracking_code)
    assert record is not None
    assert record.status == RequestState.VERIFYING.value
    assert len(await timeline_of(sessions, cause.tracking_code)) == 2


async def test_offsets_are_kept_per_partition(sessions: Sessions) -> None:
    first, second = Feed(sessions, partition=0), Feed(sessions, partition=1)
    a, b = lifecycle(), lifecycle()
    for left, right in zip(a, b, strict=True):
        await first.fold(left)
        await second.fold(right)
    assert await next_offset(sessions, 0) == 3
    assert await next_offset(sessions, 1) == 3
    for code in (a[0].tracking_code, b[0].tracking_code):
        record = await record_of(sessions, code)
        assert record is not None and record.status == "APPROVED"


# --- refused events -------------------------------------------------------------------------------


async def test_verification_after_approval_is_refused_and_recorded(feed: Feed, sessions: Sessions) -> None:
    events = lifecycle(NextStep.APPROVE)
    await feed.fold(*events)
    before = await snapshot(sessions)
    late = VerificationCompleted(
        tracking_code=events[0].tracking_code,
        occurred_at=T0 + timedelta(minutes=5),
        caused_by=events[0].event_id,
        next_step=NextStep.REJECT,
    )
    assert await feed.fold(late) is None

    record = await record_of(sessions, late.tracking_code)
    assert record is not None
    assert record.status == RequestState.APPROVED.value
    timeline = await timeline_of(sessions, late.tracking_code)
    assert len(timeline) == 4
    refused = timeline[-1]
    assert (refused.event_id, refused.applied, refused.status_after) == (late.event_id, False, None)
    assert refused.detail_en and refused.detail_en.startswith("Event refused")
    assert refused.detail_fa
    after = await snapshot(sessions)
    assert after["request_status"] == before["request_status"]
    assert after["outbox"] == before["outbox"]


async def test_refused_event_redelivered_is_recorded_once(feed: Feed, sessions: Sessions) -> None:
    cause = submitted()
    stray = verified(cause)
    assert await feed.fold(stray) is None
    assert await feed.fold(stray) is None
    timeline = await timeline_of(sessions, cause.tracking_code)
    assert [(e.event_id, e.applied) for e in timeline] == [(stray.event_id, False)]


async def test_inquiry_for_an_unknown_request_is_refused_and_creates_no_request(feed: Feed, sessions: Sessions) -> None:
    stray = inquiry_done(submitted())
    assert await feed.fold(stray) is None
    assert await record_of(sessions, stray.tracking_code) is None
    [entry] = await timeline_of(sessions, stray.tracking_code)
    assert (entry.event_type, entry.applied, entry.status_after) == ("InquiryCompleted", False, None)
    assert await outbox(sessions) == []
    assert await next_offset(sessions) == 1


async def test_submission_is_never_applied_twice_under_a_new_event_id(feed: Feed, sessions: Sessions) -> None:
    first = submitted()
    again = submitted(first.tracking_code)  # a different event id for the same tracking code
    await feed.fold(first)
    assert await feed.fold(again) is None
    timeline = await timeline_of(sessions, first.tracking_code)
    assert [(e.applied, e.status_after) for e in timeline] == [(True, "SUBMITTED"), (False, None)]
    assert len(await outbox(sessions)) == 1


# --- void submissions -----------------------------------------------------------------------------


async def test_void_submission_only_moves_the_offset(feed: Feed, sessions: Sessions) -> None:
    event = submitted()
    before = await snapshot(sessions)
    assert await feed.fold(event, void=True) is None
    after = await snapshot(sessions)
    assert without_offsets(after) == without_offsets(before)
    assert await next_offset(sessions) == 1
    assert await record_of(sessions, event.tracking_code) is None


async def test_events_following_a_void_submission_are_refused(feed: Feed, sessions: Sessions) -> None:
    cause = submitted()
    await feed.fold(cause, void=True)
    await feed.fold(inquiry_done(cause))
    await feed.fold(verified(cause))
    assert await record_of(sessions, cause.tracking_code) is None
    assert [e.applied for e in await timeline_of(sessions, cause.tracking_code)] == [False, False]
    assert await outbox(sessions) == []


# --- many requests at once ------------------------------------------------------------------------


STEPS = [NextStep.APPROVE, NextStep.AGENCY_REVIEW, NextStep.NEEDS_CORRECTION, NextStep.REJECT]


def many_requests(rng: random.Random, count: int = 20) -> list[list[RequestEvent]]:
    """Request histories of various shapes, including a stray event and duplicates within a history."""
    histories: list[list[RequestEvent]] = []
    for index in range(count):
        cause = submitted(at=T0 + timedelta(seconds=index))
        events: list[RequestEvent] = [cause, inquiry_done(cause)]
        if rng.random() < 0.3:
            events.append(inquiry_done(cause, inquiry="address", outcome=InquiryOutcome.UNAVAILABLE))
        if rng.random() < 0.2:
            events.append(events[1])  # a duplicate publication
        events.append(verified(cause, rng.choice(STEPS)))
        if rng.random() < 0.2:
            events.append(verified(cause, NextStep.REJECT).model_copy(update={"event_id": "late-" + cause.event_id}))
        histories.append(events)
    return histories


def interleave(
    rng: random.Random, histories: list[list[RequestEvent]], partitions: int
) -> list[tuple[int, RequestEvent]]:
    """Each request on the partition of its key, partitions read concurrently: per-request order is kept."""
    queues: dict[int, list[RequestEvent]] = {partition: [] for partition in range(partitions)}
    pending = [list(history) for history in histories]
    # The producers append to the partitions in a random interleaving of the requests.
    while any(pending):
        history = rng.choice([h for h in pending if h])
        event = history.pop(0)
        queues[int(event.tracking_code) % partitions].append(event)
    # The consumer sees the partitions in yet another interleaving.
    order: list[tuple[int, RequestEvent]] = []
    cursors = dict.fromkeys(queues, 0)
    while any(cursors[p] < len(queues[p]) for p in queues):
        partition = rng.choice([p for p in queues if cursors[p] < len(queues[p])])
        order.append((partition, queues[partition][cursors[partition]]))
        cursors[partition] += 1
    return order


@dataclass
class Projection:
    status: dict[str, str | None] = field(default_factory=dict)
    timeline: dict[str, list[tuple[str, bool, str | None]]] = field(default_factory=dict)
    changes: dict[str, list[tuple[str, str | None, str]]] = field(default_factory=dict)


async def projection_of(sessions: Sessions, codes: list[str]) -> Projection:
    seen = Projection()
    rows = await outbox(sessions)
    for code in codes:
        record = await record_of(sessions, code)
        seen.status[code] = None if record is None else record.status
        seen.timeline[code] = [(e.event_id, e.applied, e.status_after) for e in await timeline_of(sessions, code)]
        changes = [parse_status_event(row.value.encode()) for row in rows if row.key == code]
        seen.changes[code] = [(c.event_id, c.previous_status, c.status.value) for c in changes]
    return seen


@pytest.mark.parametrize("seed", [1, 2])
async def test_interleaved_requests_fold_as_if_each_were_alone(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    histories = many_requests(rng)
    codes = [history[0].tracking_code for history in histories]

    alone_engine, alone = await new_database(tmp_path / "alone.db")
    for partition, history in enumerate(histories):
        feed = Feed(alone, partition=partition)
        await feed.fold(*history)
    expected = await projection_of(alone, codes)
    await alone_engine.dispose()
    assert len(set(expected.status.values())) > 1  # the histories are not all alike

    together_engine, together = await new_database(tmp_path / "together.db")
    feeds = {partition: Feed(together, partition=partition) for partition in range(3)}
    delivered = interleave(rng, histories, partitions=3)
    for partition, event in delivered:
        await feeds[partition].fold(event)
    assert await projection_of(together, codes) == expected

    # A rebalance replays each partition from an older committed offset: still the same projection.
    for partition, feed in feeds.items():
        replay_from = rng.randrange(feed.next_offset + 1)
        replayed = [event for p, event in delivered if p == partition]
        for offset in range(replay_from, feed.next_offset):
            await feed.at(offset, replayed[offset])
    assert await projection_of(together, codes) == expected
    await together_engine.dispose()


# --- lookups --------------------------------------------------------------------------------------


async def test_lookup_with_the_right_national_id_gives_the_record_and_timeline(feed: Feed, sessions: Sessions) -> None:
    events = lifecycle()
    await feed.fold(*events)
    found = await lookup(
        sessions=sessions, tracking_code=events[0].tracking_code, national_id=NATIONAL_ID, lookup_key=LOOKUP_KEY
    )
    assert found is not None
    record, timeline = found
    assert record.tracking_code == events[0].tracking_code
    assert record.status == "APPROVED"
    assert [entry.event_id for entry in timeline] == [event.event_id for event in events]


async def test_lookup_with_a_wrong_national_id_finds_nothing(feed: Feed, sessions: Sessions) -> None:
    event = submitted()
    await feed.fold(event)
    assert (
        await lookup(
            sessions=sessions, tracking_code=event.tracking_code, national_id=OTHER_NATIONAL_ID, lookup_key=LOOKUP_KEY
        )
        is None
    )


async def test_lookup_with_another_key_finds_nothing(feed: Feed, sessions: Sessions) -> None:
    event = submitted()
    await feed.fold(event)
    assert (
        await lookup(
            sessions=sessions, tracking_code=event.tracking_code, national_id=NATIONAL_ID, lookup_key=b"x" * 16
        )
        is None
    )


async def test_lookup_of_an_unknown_code_finds_nothing(feed: Feed, sessions: Sessions) -> None:
    await feed.fold(submitted())
    assert (
        await lookup(sessions=sessions, tracking_code=CODES.next_code(), national_id=NATIONAL_ID, lookup_key=LOOKUP_KEY)
        is None
    )


async def test_lookup_of_a_refused_only_code_finds_nothing(feed: Feed, sessions: Sessions) -> None:
    stray = inquiry_done(submitted())
    await feed.fold(stray)
    assert (
        await lookup(
            sessions=sessions, tracking_code=stray.tracking_code, national_id=NATIONAL_ID, lookup_key=LOOKUP_KEY
        )
        is None
    )


# --- the outbox relay -----------------------------------------------------------------------------


@dataclass
class FakeBroker:
    """Records what the relay publishes; fails the publishes numbered in `fail_on` (1-based)."""

    calls: list[tuple[bytes, str, bytes, dict[str, str]]] = field(default_factory=list)
    fail_on: set[int] = field(default_factory=set)
    attempts: int = 0

    async def publish(self, value: bytes, topic: str, key: bytes, headers: dict[str, str]) -> None:
        self.attempts += 1
        if self.attempts in self.fail_on:
            raise ConnectionError("kafka is down")
        self.calls.append((value, topic, key, headers))


def relay_for(sessions: Sessions, broker: FakeBroker) -> OutboxRelay:
    return OutboxRelay(
        sessions=sessions,
        broker=broker,
        tracer=TracerProvider().get_tracer("t"),
        poll_s=0.01,
    )


async def two_requests(feed: Feed) -> list[RequestEvent]:
    a, b = lifecycle(), lifecycle(NextStep.NEEDS_CORRECTION)
    events = [a[0], b[0], a[1], b[1], a[2], b[2]]
    await feed.fold(*events)
    return events


async def test_relay_publishes_pending_rows_once_in_commit_order(feed: Feed, sessions: Sessions) -> None:
    events = await two_requests(feed)
    rows = await outbox(sessions)
    broker = FakeBroker()
    relay = relay_for(sessions, broker)

    assert await relay.publish_pending() == 6
    assert [(value.decode(), topic, key.decode(), headers) for value, topic, key, headers in broker.calls] == [
        (row.value, row.topic, row.key, json.loads(row.headers)) for row in rows
    ]
    assert [parse_status_event(value).caused_by for value, *_ in broker.calls] == [e.event_id for e in events]
    assert all(key == event_key(parse_status_event(value)) for value, _, key, _ in broker.calls)
    assert all(row.published_at is not None for row in await outbox(sessions))

    assert await relay.publish_pending() == 0
    assert len(broker.calls) == 6


async def test_relay_respects_its_batch_size(feed: Feed, sessions: Sessions) -> None:
    await two_requests(feed)
    rows = await outbox(sessions)
    broker = FakeBroker()
    relay = relay_for(sessions, broker)
    assert await relay.publish_pending(batch=4) == 4
    assert await relay.publish_pending(batch=4) == 2
    assert await relay.publish_pending(batch=4) == 0
    assert [value.decode() for value, *_ in broker.calls] == [row.value for row in rows]


async def test_relay_failure_leaves_the_rest_for_the_next_pass(feed: Feed, sessions: Sessions) -> None:
    await two_requests(feed)
    rows = await outbox(sessions)
    broker = FakeBroker(fail_on={3})
    relay = relay_for(sessions, broker)
    with pytest.raises(ConnectionError):
        await relay.publish_pending()
    assert [row.published_at is not None for row in await outbox(sessions)] == [True, True] + [False] * 4
    assert await relay.publish_pending() == 4
    assert [value.decode() for value, *_ in broker.calls] == [row.value for row in rows]


async def test_relay_publishes_rows_folded_after_a_pass(feed: Feed, sessions: Sessions) -> None:
    broker = FakeBroker()
    relay = relay_for(sessions, broker)
    assert await relay.publish_pending() == 0
    events = lifecycle()
    await feed.fold(events[0])
    assert await relay.publish_pending() == 1
    await feed.fold(events[1])
    await feed.fold(events[2])
    assert await relay.publish_pending() == 2
    statuses = [parse_status_event(value).status for value, *_ in broker.calls]
    assert statuses == [RequestState.SUBMITTED, RequestState.VERIFYING, RequestState.APPROVED]


# --- the consumer's decoding ----------------------------------------------------------------------


def record_of_event(event: RequestEvent, *, timestamp_ms: int, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    value = event_value(event)
    return ConsumerRecord(
        topic=TOPIC,
        partition=0,
        offset=offset,
        timestamp=timestamp_ms,
        timestamp_type=LOG_APPEND_TIME_TYPE,
        key=event_key(event),
        value=value,
        checksum=None,
        serialized_key_size=15,
        serialized_value_size=len(value),
        headers=[],
    )


def test_decode_keeps_a_submission_appended_in_time() -> None:
    event = submitted(at=datetime.now(UTC))
    delivered = decode(record_of_event(event, timestamp_ms=int(event.accept_by.timestamp() * 1000) - 1))
    assert delivered.event == event and not delivered.void


async def test_a_submission_appended_after_accept_by_only_moves_the_offset(sessions: Sessions) -> None:
    event = submitted(at=datetime.now(UTC))
    delivered = decode(record_of_event(event, timestamp_ms=int(event.accept_by.timestamp() * 1000) + 1_000))
    assert delivered.void
    projector = Projector(sessions, LOOKUP_KEY, TERMS, CALENDAR)
    assert await projector.fold_batch([delivered]) == []
    assert await record_of(sessions, event.tracking_code) is None
    assert await timeline_of(sessions, event.tracking_code) == []
    assert await next_offset(sessions) == 1


def test_decode_skips_an_event_type_this_build_does_not_know() -> None:
    value = json.dumps({"event_type": "FromTheFuture", "tracking_code": "1" * 15}).encode()
    record = dataclasses.replace(record_of_event(submitted(), timestamp_ms=0), value=value)
    assert decode(record).event is None


def test_decode_refuses_a_record_that_is_not_an_event() -> None:
    record = dataclasses.replace(record_of_event(submitted(), timestamp_ms=0), value=b"not json")
    with pytest.raises(PermanentError):
        decode(record)


async def test_one_batch_folds_many_requests_like_one_event_at_a_time(tmp_path: Path) -> None:
    rng = random.Random(7)
    offsets: dict[int, int] = {}
    delivered = []
    for partition, event in interleave(rng, many_requests(rng, 15), 3):
        offsets[partition] = offsets.get(partition, -1) + 1
        delivered.append(Delivered(Position(TOPIC, partition, offsets[partition]), event))
    one_by_one_engine, one_by_one = await new_database(tmp_path / "one.db")
    batched_engine, batched = await new_database(tmp_path / "batched.db")
    single = Projector(one_by_one, LOOKUP_KEY, TERMS, CALENDAR, now=lambda: T0)
    for item in delivered:
        await single.fold_batch([item])
    projector = Projector(batched, LOOKUP_KEY, TERMS, CALENDAR, now=lambda: T0)
    for start in range(0, len(delivered), 37):
        await projector.fold_batch(delivered[start : start + 37])
    # Redelivering everything (a crash before any commit of Kafka's offsets) changes nothing.
    before = await snapshot(batched)
    await projector.fold_batch(delivered)
    assert await snapshot(batched) == before
    assert await snapshot(one_by_one) == await snapshot(batched)
    await one_by_one_engine.dispose()
    await batched_engine.dispose()
