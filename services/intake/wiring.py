"""What intake's routes depend on, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker

from shared.catalog import Catalog
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.events import RequestSubmitted
from shared.kafka import BusConnection, publish_event
from shared.topics import Topic

from .guards import IdempotencyStore, RateLimits

SOURCE = "/khedmat/intake"


@dataclass
class Intake:
    """intake's dependencies."""

    catalog: Catalog
    generator: TrackingCodeGenerator
    broker: KafkaBroker
    bus: BusConnection
    accept_window_s: float
    grace_s: float
    idempotency: IdempotencyStore
    rate_limits: RateLimits

    async def publish_submission(self, event: RequestSubmitted) -> RecordMetadata:
        """Record a submission on `desk.requests`, waiting for all in-sync replicas."""
        return await publish_event(self.broker, event, topic=Topic.REQUESTS, source=SOURCE)
