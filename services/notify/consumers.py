"""notify's bus edge: its subscriptions (contacts from desk.requests, status changes from desk.status) and its
publication, declared once, and the handler of one record of each.

Both topics are consumed by KeyOrderedConsumers built from `subscriptions`: many requests at once, each
request's events in order, commits batched (one commit per record capped the contacts at a few dozen a
second, and desk.requests carries every lifecycle event). The AsyncAPI document comes from the same list.
"""

from __future__ import annotations

import asyncio
from functools import partial

from shared.events import AccessRecorded, NotificationOutcome, RequestSubmitted, StatusChanged
from shared.kafka import PermanentError
from shared.keyed_consumer import Record
from shared.subscriptions import Publication, Subscription, read_event
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


async def handle_request_record(deps: Notify, record: Record) -> None:
    """One record of desk.requests: keep the contact details of a RequestSubmitted; other types are skipped.

    A submission Kafka appended after intake had already answered 503 never happened for anyone: its contact
    details are not kept (`read_event` drops it).
    """
    event = read_event(record, (RequestSubmitted,))
    if event is None:
        return
    await record_contact(sessions=deps.sessions, event=event, audit_key=deps.audit_key)


async def handle_status_record(deps: Notify, record: Record) -> None:
    """One record of desk.status: tell the applicant of a StatusChanged; other event types are skipped."""
    event = read_event(record, (StatusChanged,))
    if event is None:
        return
    try:
        await _notify_when_contact_known(deps, event)
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


def subscriptions(deps: Notify, *, concurrency: int) -> list[Subscription]:
    """notify's two subscriptions, key-ordered, each in a consumer group of its own (the topics are read
    independently: a status change waits in place a little for its contact, `_notify_when_contact_known`)."""
    return [
        Subscription(
            name="notify-contacts",
            topic=Topic.REQUESTS,
            group=f"{deps.group_id}-contacts",
            events=(RequestSubmitted,),
            description=CONTACTS_SUBSCRIPTION_DESCRIPTION,
            handler=partial(handle_request_record, deps),
            concurrency=concurrency,
        ),
        Subscription(
            name="notify",
            topic=Topic.STATUS,
            group=deps.group_id,
            events=(StatusChanged,),
            description=STATUS_SUBSCRIPTION_DESCRIPTION,
            handler=partial(handle_status_record, deps),
            concurrency=concurrency,
        ),
    ]


PUBLICATIONS = [
    Publication(
        Topic.NOTIFICATIONS,
        (NotificationOutcome,),
        "Each notification's outcome (sent, delivered, failed), relayed from notify's own records.",
    ),
    Publication(
        Topic.ACCESS,
        (AccessRecorded,),
        "One record per read of a request's notifications on the internal route, acknowledged before the answer.",
    ),
]
