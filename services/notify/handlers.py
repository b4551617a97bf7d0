"""notify's edge on the bus: contacts from desk.requests, status changes from desk.status, one record each."""

from __future__ import annotations

import asyncio
import json
import logging

from faststream.kafka import KafkaRouter

from shared.events import (
    NotificationOutcome,
    RequestSubmitted,
    StatusChanged,
    parse_request_event,
    parse_status_event,
)
from shared.kafka import PermanentError, make_router
from shared.keyed_consumer import Record
from shared.topics import Topic

from .service import ContactNotYetKnown, NotificationUndeliverable, Notify, notify_status_change, record_contact

CONTACT_POLL_S = 0.25
CONTACTS_SUBSCRIPTION_DESCRIPTION = (
    "Keeps each request's contact details (mobile, email, language, chosen channels) from RequestSubmitted; "
    "other request events are skipped."
)
STATUS_SUBSCRIPTION_DESCRIPTION = (
    "Tells the applicant about each status change on the channels they chose (SMS, and email when given). "
    "Requests are handled concurrently (bounded), each request's changes in order; a change that cannot be "
    "told (a permanent failure, or the attempt budget spent) goes to desk.status.dlq with the reason."
)

log = logging.getLogger(__name__)


def documentation_router(*, group_id: str) -> KafkaRouter:
    """notify's subscriptions and publication as faststream declarations, for the AsyncAPI document only.

    Both topics are consumed by KeyOrderedConsumers (`handle_request_record`, `handle_status_record`): many
    requests at once, each request's events in order, commits batched (one commit per record capped the
    contacts at a few dozen a second, and desk.requests carries every lifecycle event).
    """
    router = make_router()
    router.publisher(
        Topic.NOTIFICATIONS,
        title="desk.notifications:NotificationOutcome",
        description="Each notification's outcome (sent, delivered, failed), relayed from notify's own records.",
        schema=NotificationOutcome,
    )

    @router.subscriber(
        Topic.REQUESTS,
        group_id=f"{group_id}-contacts",
        auto_offset_reset="earliest",
        title="desk.requests:notify-contacts",
        description=CONTACTS_SUBSCRIPTION_DESCRIPTION,
    )
    async def on_request_submitted(body: RequestSubmitted) -> None:
        raise NotImplementedError("documentation only: records are consumed by KeyOrderedConsumer")

    @router.subscriber(
        Topic.STATUS,
        group_id=group_id,
        auto_offset_reset="earliest",
        title="desk.status:notify",
        description=STATUS_SUBSCRIPTION_DESCRIPTION,
    )
    async def on_status_changed(body: StatusChanged) -> None:
        raise NotImplementedError("documentation only: records are consumed by KeyOrderedConsumer")

    return router


async def handle_request_record(deps: Notify, record: Record) -> None:
    """One record of desk.requests: keep the contact details of a RequestSubmitted; other types are skipped."""
    body = json.loads(record.value or b"null")
    # The topic carries every lifecycle event, including types added after this build: skip them unparsed.
    if not isinstance(body, dict) or body.get("event_type") != "RequestSubmitted":
        return
    event = parse_request_event(body)
    if not isinstance(event, RequestSubmitted):
        return
    # A submission Kafka appended after intake had already answered 503 never happened for anyone: its
    # contact details are not kept.
    if not event.counts(timestamp_ms=record.timestamp, timestamp_type=record.timestamp_type):
        log.warning(
            "skipping submission %s: appended after its accept_by",
            event.tracking_code,
            extra={"tracking_code": event.tracking_code},
        )
        return
    await record_contact(sessions=deps.sessions, event=event)


async def handle_status_record(deps: Notify, record: Record) -> None:
    """One record of desk.status: tell the applicant of a StatusChanged; other event types are skipped."""
    body = json.loads(record.value or b"null")
    if not isinstance(body, dict) or body.get("event_type") != "StatusChanged":
        return
    try:
        await _notify_when_contact_known(deps, parse_status_event(body))
    except NotificationUndeliverable as error:
        # No retry fixes it: the consumer dead-letters the status change with this reason at once.
        raise PermanentError(str(error)) from None


async def _notify_when_contact_known(deps: Notify, event: StatusChanged) -> list[str]:
    """Wait in place a little for the contact; the two topics are consumed independently, so it may lag."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deps.contact_wait_s
    while True:
        try:
            return await notify_status_change(
                sessions=deps.sessions,
                event=event,
                sms=deps.sms,
                email=deps.email,
                renderer=deps.renderer,
                policy=deps.policy,
                quiet=deps.quiet,
            )
        except ContactNotYetKnown:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(CONTACT_POLL_S)
