"""tracking's use cases: fold one event into the projection (exactly once in effect), look a request up."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import propagate
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.domain.state_machine import Applied, Flags, RequestState, apply
from shared.envelope import cloudevent_headers
from shared.events import RequestEvent, RequestSubmitted, StatusChanged, derived_event_id
from shared.topics import Topic

from .domain import check_authority, describe, status_reason, trigger_for
from .models import ConsumedOffset, OutboxMessage, RequestRecord, TimelineEntry

SOURCE = "/khedmat/tracking"

Sessions = async_sessionmaker[AsyncSession]


def national_id_digest(national_id: str, key: bytes) -> str:
    """The keyed digest stored instead of the national ID."""
    return hmac.new(key, national_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Position:
    """Where an event was read from."""

    topic: str
    partition: int
    offset: int


def _refused(event: RequestEvent, reason_fa: str, reason_en: str) -> TimelineEntry:
    """The timeline entry of an event that was refused: recorded with its reason, never applied."""
    return TimelineEntry(
        tracking_code=event.tracking_code,
        event_id=event.event_id,
        event_type=event.event_type,
        occurred_at=event.occurred_at,
        applied=False,
        detail_fa=f"رویداد پذیرفته نشد: {reason_fa}",
        detail_en=f"Event refused: {reason_en}",
    )


async def fold_event(
    *,
    sessions: Sessions,
    event: RequestEvent,
    position: Position,
    lookup_key: bytes,
    void: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> StatusChanged | None:
    """Apply one event to the projection in one transaction with its offset and its outbox row.

    An offset below the stored one was folded already; an event id already on the timeline is a duplicate
    publication: both change nothing. A `void` event (a submission or command Kafka appended after intake
    answered 503) only moves the offset. Returns the StatusChanged written to the outbox, if any.
    """
    async with sessions() as session, session.begin():
        stored = await session.get(ConsumedOffset, (position.topic, position.partition))
        if stored is not None and position.offset < stored.next_offset:
            return None
        if stored is None:
            stored = ConsumedOffset(topic=position.topic, partition=position.partition, next_offset=0)
            session.add(stored)
        stored.next_offset = position.offset + 1
        if void:
            return None

        duplicate = (
            await session.exec(
                select(TimelineEntry.id).where(
                    TimelineEntry.tracking_code == event.tracking_code, TimelineEntry.event_id == event.event_id
                )
            )
        ).first()
        if duplicate is not None:
            return None

        record = await session.get(RequestRecord, event.tracking_code)
        # An agency may act only on its own requests: intake checked the key's scope, not the request itself.
        foreign = check_authority(event, agency=record.agency, service_id=record.service_id) if record else None
        if foreign is not None:
            session.add(_refused(event, foreign.reason_fa, foreign.reason_en))
            return None
        previous = RequestState(record.status) if record else None
        flags = Flags(record.sla_breached, record.complaint_open) if record else Flags()
        outcome = apply(previous, trigger_for(event), flags)
        if not isinstance(outcome, Applied):
            session.add(_refused(event, outcome.reason, outcome.reason))
            return None
        text = describe(event, outcome.state)
        session.add(
            TimelineEntry(
                tracking_code=event.tracking_code,
                event_id=event.event_id,
                event_type=event.event_type,
                occurred_at=event.occurred_at,
                applied=True,
                status_after=outcome.state.value,
                detail_fa=text.detail_fa,
                detail_en=text.detail_en,
            )
        )
        if record is None:
            assert isinstance(event, RequestSubmitted)  # only SUBMIT applies to no request
            record = RequestRecord(
                tracking_code=event.tracking_code,
                national_id_digest=national_id_digest(event.applicant.national_id, lookup_key),
                service_id=event.service_id,
                catalog_version=event.catalog_version,
                agency=event.agency,
                status=outcome.state.value,
                submitted_at=event.occurred_at,
                updated_at=event.occurred_at,
            )
            session.add(record)
        record.status = outcome.state.value
        record.sla_breached = outcome.flags.sla_breached
        record.complaint_open = outcome.flags.complaint_open
        record.waiting_for_fa = text.waiting_for_fa
        record.waiting_for_en = text.waiting_for_en
        record.updated_at = max(record.updated_at, event.occurred_at)
        if not outcome.changed:
            return None
        reason_fa, reason_en = status_reason(event)
        change = StatusChanged(
            event_id=derived_event_id(event.event_id, "StatusChanged"),
            tracking_code=event.tracking_code,
            occurred_at=event.occurred_at,
            caused_by=event.event_id,
            caused_by_type=event.event_type,
            service_id=record.service_id,
            agency=record.agency,
            previous_status=outcome.previous,
            status=outcome.state,
            reason_fa=reason_fa,
            reason_en=reason_en,
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the consume span: the relay's publish continues this trace
        session.add(
            OutboxMessage(
                topic=Topic.STATUS.value,
                key=change.tracking_code,
                value=change.model_dump_json(),
                headers=json.dumps(cloudevent_headers(change, source=SOURCE)),
                trace_context=json.dumps(carrier),
                created_at=now(),
            )
        )
        return change


async def stored_offsets(*, sessions: Sessions, topic: str) -> dict[int, int]:
    """The next offset to fold per partition of `topic`, as committed with the projection."""
    async with sessions() as session:
        rows = await session.exec(
            select(ConsumedOffset.partition, ConsumedOffset.next_offset).where(ConsumedOffset.topic == topic)
        )
        return dict(rows.all())


async def lookup(
    *, sessions: Sessions, tracking_code: str, national_id: str, lookup_key: bytes
) -> tuple[RequestRecord, list[TimelineEntry]] | None:
    """The request and its timeline, only when the national ID is the applicant's (else None, uniformly)."""
    async with sessions() as session:
        record = await session.get(RequestRecord, tracking_code)
        expected = national_id_digest(national_id, lookup_key)
        if record is None or not hmac.compare_digest(record.national_id_digest, expected):
            return None
        entries = await session.exec(
            select(TimelineEntry).where(TimelineEntry.tracking_code == tracking_code).order_by(TimelineEntry.id)  # type: ignore[arg-type]
        )
        return record, list(entries)
