"""inquiry's edge on the bus: one record of desk.requests in, its recorded outcomes published.

Records are fed by `shared.keyed_consumer.KeyOrderedConsumer` (concurrent across requests, in order within
one); the faststream router below only documents the same subscription and publications in AsyncAPI.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from faststream.kafka import KafkaBroker, KafkaRouter

from shared.catalog import Catalog
from shared.events import (
    CorrectionSubmitted,
    InquiryCompleted,
    RequestSubmitted,
    ReviewRequested,
    VerificationCompleted,
    parse_request_event,
)
from shared.kafka import PermanentError, make_router, publish_event
from shared.keyed_consumer import Record
from shared.topics import Topic, agency_inbox_topic

from .service import Agencies, verify_correction_once, verify_submission_once
from .store import Outcome, PublishMarks, Sessions

SOURCE = "/khedmat/inquiry"
SUBSCRIPTION_DESCRIPTION = (
    "Runs the inquiries a submitted or corrected request needs; other request events are skipped. "
    "Requests are processed concurrently (bounded), each request's events in order."
)

# The request events that start a verification; every other type is skipped before parsing.
VERIFIED_EVENT_TYPES = frozenset({"RequestSubmitted", "CorrectionSubmitted"})

log = logging.getLogger(__name__)


@dataclass
class Inquiry:
    """inquiry's dependencies."""

    catalog: Catalog
    agencies: Agencies
    broker: KafkaBroker
    sessions: Sessions
    marks: PublishMarks


def destination(outcome: Outcome) -> str:
    """Where an outcome is published: a review request to its agency's inbox, the rest to desk.requests."""
    if isinstance(outcome, ReviewRequested):
        return agency_inbox_topic(outcome.agency)
    return Topic.REQUESTS


async def handle_request_record(deps: Inquiry, record: Record) -> None:
    """Verify a submission or correction once, then publish what is recorded for it (again, on redelivery)."""
    try:
        body = json.loads(record.value or b"")
    except ValueError as error:
        raise PermanentError(f"not JSON: {error}") from error
    if not isinstance(body, dict):
        raise PermanentError("an event is a JSON object")
    if body.get("event_type") not in VERIFIED_EVENT_TYPES:
        return  # other lifecycle events, including types newer than this build, are not inquiry's
    event = parse_request_event(body)
    if not isinstance(event, RequestSubmitted | CorrectionSubmitted):
        return
    if not event.counts(timestamp_ms=record.timestamp, timestamp_type=record.timestamp_type):
        log.warning(
            "skipping %s %s: appended after its accept_by (intake answered 503)", event.event_type, event.tracking_code
        )
        return
    if isinstance(event, RequestSubmitted):
        outcomes = await verify_submission_once(
            sessions=deps.sessions, catalog=deps.catalog, agencies=deps.agencies, event=event
        )
    else:
        found = await verify_correction_once(
            sessions=deps.sessions, catalog=deps.catalog, agencies=deps.agencies, correction=event
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


def documentation_router(*, group_id: str, agencies: list[str]) -> KafkaRouter:
    """inquiry's subscription and publications as faststream declarations, for the AsyncAPI document only."""
    router = make_router()
    for schema in (InquiryCompleted, VerificationCompleted):
        router.publisher(Topic.REQUESTS, title=f"desk.requests:{schema.__name__}", schema=schema)
    for agency in agencies:
        router.publisher(
            agency_inbox_topic(agency),
            title=f"{agency_inbox_topic(agency)}:ReviewRequested",
            description="Requests this agency must review, with only the fields its service's review shares.",
            schema=ReviewRequested,
        )

    @router.subscriber(
        Topic.REQUESTS,
        group_id=group_id,
        title="desk.requests:inquiry",
        description=SUBSCRIPTION_DESCRIPTION,
    )
    async def on_request_event(body: RequestSubmitted | CorrectionSubmitted) -> None:
        raise NotImplementedError("documentation only: records are consumed by KeyOrderedConsumer")

    return router
