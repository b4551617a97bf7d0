"""inquiry's Kafka subscribers: parse, call the use case, publish the outcomes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from shared.catalog import Catalog
from shared.events import InquiryCompleted, RequestSubmitted, VerificationCompleted, parse_request_event
from shared.kafka import make_router, publish_event
from shared.topics import Topic

from .service import Agencies, verify_submission

SOURCE = "/khedmat/inquiry"

log = logging.getLogger(__name__)


@dataclass
class Inquiry:
    """inquiry's dependencies."""

    catalog: Catalog
    agencies: Agencies
    broker: KafkaBroker


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
        if body.get("event_type") != "RequestSubmitted":
            return  # other lifecycle events, including types newer than this build, are not inquiry's
        event = parse_request_event(body)
        if not isinstance(event, RequestSubmitted):
            return
        record = message.raw_message
        assert not isinstance(record, tuple)
        if not event.counts(timestamp_ms=record.timestamp, timestamp_type=record.timestamp_type):
            log.warning(
                "skipping submission %s: appended after its accept_by (intake answered 503)", event.tracking_code
            )
            return
        completed, verification = await verify_submission(catalog=deps.catalog, event=event, agencies=deps.agencies)
        # Outcomes first, conclusion last, all keyed by tracking code: tracking sees them in this order.
        for outcome in completed:
            await publish_event(deps.broker, outcome, topic=Topic.REQUESTS, source=SOURCE)
        await publish_event(deps.broker, verification, topic=Topic.REQUESTS, source=SOURCE)

    return router
