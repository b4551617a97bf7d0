"""inquiry's Kafka subscribers: parse, call the use case, publish the outcomes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from shared.catalog import Catalog
from shared.events import (
    CorrectionSubmitted,
    InquiryCompleted,
    RequestSubmitted,
    VerificationCompleted,
    parse_request_event,
)
from shared.kafka import make_router, publish_event
from shared.topics import Topic

from .service import Agencies
from .store import Sessions, verify_correction_once, verify_submission_once

SOURCE = "/khedmat/inquiry"

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


def build_router(deps: Inquiry, *, group_id: str) -> KafkaRouter:
    """The subscribers of inquiry, bound to its dependencies."""
    router = make_router()
    for schema in (InquiryCompleted, VerificationCompleted):
        router.publisher(Topic.REQUESTS, title=f"desk.requests:{schema.__name__}", schema=schema)

    @router.subscriber(
        Topic.REQUESTS,
        group_id=group_id,
        auto_offset_reset="earliest",
        title="desk.requests:inquiry",
        description="Runs the inquiries a submitted request needs; other request events are skipped.",
    )
    async def on_request_event(body: dict[str, Any], message: KafkaMessage) -> None:
        if body.get("event_type") not in VERIFIED_EVENT_TYPES:
            return  # other lifecycle events, including types newer than this build, are not inquiry's
        event = parse_request_event(body)
        if not isinstance(event, RequestSubmitted | CorrectionSubmitted):
            return
        record = message.raw_message
        assert not isinstance(record, tuple)
        if not event.counts(timestamp_ms=record.timestamp, timestamp_type=record.timestamp_type):
            log.warning(
                "skipping %s %s: appended after its accept_by (intake answered 503)",
                event.event_type,
                event.tracking_code,
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
        for outcome in outcomes:
            await publish_event(deps.broker, outcome, topic=Topic.REQUESTS, source=SOURCE)

    return router
