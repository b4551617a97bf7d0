"""inquiry's bus edge: its subscription to desk.requests and its publications, declared once, and the handler
of one record (verify a submission or correction once, publish its recorded outcomes).

Records are fed by `shared.keyed_consumer.KeyOrderedConsumer` (concurrent across requests, in order within
one), built from `subscriptions`; the AsyncAPI document is generated from the same declarations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from faststream.kafka import KafkaBroker

from shared.catalog import Catalog
from shared.events import (
    AccessRecorded,
    CorrectionSubmitted,
    InquiryCompleted,
    RequestSubmitted,
    ReviewRequested,
    VerificationCompleted,
)
from shared.kafka import publish_event
from shared.keyed_consumer import Record
from shared.settings import DEV_AUDIT_SUBJECT_KEY
from shared.subscriptions import Publication, Subscription, read_event
from shared.topics import Topic, agency_inbox_topic

from .service import Agencies, verify_correction_once, verify_submission_once
from .store import Outcome, PublishMarks, Sessions

SOURCE = "/khedmat/inquiry"
SUBSCRIPTION_DESCRIPTION = (
    "Runs the inquiries a submitted or corrected request needs; other request events are skipped. "
    "Requests are processed concurrently (bounded), each request's events in order."
)

# The request events that start a verification; every other type is skipped before parsing.
VERIFIED_EVENTS = (RequestSubmitted, CorrectionSubmitted)

log = logging.getLogger(__name__)


@dataclass
class Inquiry:
    """inquiry's dependencies."""

    catalog: Catalog
    agencies: Agencies
    broker: KafkaBroker
    sessions: Sessions
    marks: PublishMarks
    # KHEDMAT_AUDIT_SUBJECT_KEY (the composition root passes the configured one), for the disclosure records.
    audit_key: bytes = DEV_AUDIT_SUBJECT_KEY.encode()


def destination(outcome: Outcome) -> str:
    """Where an outcome is published: a review request to its agency's inbox, its disclosure's record to
    desk.access, the rest to desk.requests."""
    if isinstance(outcome, ReviewRequested):
        return agency_inbox_topic(outcome.agency)
    if isinstance(outcome, AccessRecorded):
        return Topic.ACCESS
    return Topic.REQUESTS


async def handle_request_record(deps: Inquiry, record: Record) -> None:
    """Verify a submission or correction once, then publish what is recorded for it (again, on redelivery)."""
    event = read_event(record, VERIFIED_EVENTS)
    if not isinstance(event, RequestSubmitted | CorrectionSubmitted):
        return  # other lifecycle events, including types newer than this build, are not inquiry's
    if isinstance(event, RequestSubmitted):
        outcomes = await verify_submission_once(
            sessions=deps.sessions, catalog=deps.catalog, agencies=deps.agencies, event=event, audit_key=deps.audit_key
        )
    else:
        found = await verify_correction_once(
            sessions=deps.sessions,
            catalog=deps.catalog,
            agencies=deps.agencies,
            correction=event,
            audit_key=deps.audit_key,
        )
        if found is None:
            log.warning("skipping correction of %s: no submission on record to verify again", event.tracking_code)
            return
        outcomes = found
    # Recorded before publishing, so a crash in between re-publishes the same events on redelivery (the
    # offset is committed only after this returns). Outcomes first, conclusion last, keyed by tracking code.
    # Marked once all are acknowledged: a redelivery after that (a crash before the commit, which with many
    # records in flight is most of them) publishes nothing, so consumers rarely even see a duplicate id.
    for outcome in outcomes:
        await publish_event(deps.broker, outcome, topic=destination(outcome), source=SOURCE)
    if outcomes:
        deps.marks.add(event.event_id)


def subscriptions(deps: Inquiry, *, group_id: str, concurrency: int) -> list[Subscription]:
    """inquiry's one subscription: desk.requests, key-ordered, `handle_request_record` per record."""
    return [
        Subscription(
            name="inquiry",
            topic=Topic.REQUESTS,
            group=group_id,
            events=VERIFIED_EVENTS,
            description=SUBSCRIPTION_DESCRIPTION,
            handler=partial(handle_request_record, deps),
            concurrency=concurrency,
        )
    ]


def publications(*, agencies: list[str]) -> list[Publication]:
    """What inquiry publishes: outcomes to desk.requests, review requests to the inbox of each reviewing agency."""
    return [
        Publication(Topic.REQUESTS, (InquiryCompleted, VerificationCompleted)),
        Publication(
            Topic.ACCESS,
            (AccessRecorded,),
            "The record of each review request's disclosure to its agency, published just before the review.",
        ),
    ] + [
        Publication(
            agency_inbox_topic(agency),
            (ReviewRequested,),
            "Requests this agency must review, with only the fields its service's review shares.",
        )
        for agency in agencies
    ]
