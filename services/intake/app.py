"""intake's composition root: settings, telemetry, broker, catalog, tracking codes, guards, blob store, routes."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiokafka.structs import RecordMetadata
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from shared.catalog import load_catalog
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.events import (
    CommandEvent,
    ComplaintFiled,
    ComplaintResolved,
    CorrectionSubmitted,
    RequestCancelled,
    RequestDecided,
    RequestSubmitted,
    ResultDelivered,
)
from shared.kafka import BusConnection, publish_event
from shared.redis_client import make_redis
from shared.service_kit import Part, ServiceKit, closing
from shared.topics import Topic, core_topics

from .adapters import TrackingClient
from .adapters_agency_keys import AgencyKeys
from .adapters_blobs import blob_store_from_settings
from .adapters_guards import IdempotencyStore, RateLimits
from .catalog_api import catalog_router
from .commands_api import router as commands_router
from .documents_api import UPLOAD_PATH
from .documents_api import router as documents_router
from .problems_api import PROBLEMS
from .requests_api import router as requests_router
from .service import Command, Intake
from .settings import IntakeSettings

SERVICE_NAME = "intake"
SOURCE = "/khedmat/intake"

# Declared for the AsyncAPI document: what intake puts on `desk.requests`.
PUBLISHED: tuple[tuple[type[RequestSubmitted | CommandEvent], str], ...] = (
    (RequestSubmitted, "A citizen's request, keyed by tracking code; sent with acks=all before intake answers 202."),
    (CorrectionSubmitted, "The citizen's correction of a request waiting for one; acks=all before intake answers."),
    (RequestCancelled, "The citizen's cancellation of an undecided request; acks=all before intake answers 202."),
    (ComplaintFiled, "The citizen's complaint about a decision or a breached SLA; acks=all before intake answers."),
    (
        RequestDecided,
        "An agency's decision (approve, reject with legal basis, needs correction), checked against the request "
        "in tracking's projection first; acks=all.",
    ),
    (
        ResultDelivered,
        "An agency's delivery of the result (a stored document or a link) on an approved request it is "
        "responsible for; acks=all.",
    ),
    (
        ComplaintResolved,
        "An agency's answer to the request's open complaint (its id checked first); acks=all before intake answers.",
    ),
)


def create_app(settings: IntakeSettings | None = None, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build intake: one FastAPI app whose lifespan connects the Kafka producer."""
    settings = settings or IntakeSettings()
    kit = ServiceKit.of(SERVICE_NAME, settings, tracer_provider, consumes=False)
    broker = kit.broker
    for schema, description in PUBLISHED:
        broker.publisher(
            Topic.REQUESTS, title=f"desk.requests:{schema.__name__}", description=description, schema=schema
        )
    bus = kit.bus(core_topics())
    # One Redis client (short timeouts, no retries) shared by idempotency keys and rate limits.
    redis = make_redis(settings.redis.url)
    intake = _intake(settings, broker=broker, bus=bus, redis=redis, tracer_provider=kit.tracer_provider)
    return kit.app(
        title="Khedmat intake",
        description="The service catalog and the command side of the service desk (میز خدمت).",
        # The upload route bounds its own body: its limit is the catalog's largest document (documents_api.py).
        body_limits={UPLOAD_PATH: None},
        routers=[requests_router, catalog_router, commands_router, documents_router],
        failures=PROBLEMS,
        # Started in order, stopped in reverse: the bus first, then tracking's client, then Redis.
        parts=[closing("redis", redis.aclose), closing("tracking client", intake.aclose), _bus_part(bus)],
        bus=bus,
        redis=redis,
        state={"intake": intake, "settings": settings},
    )


def _bus_part(bus: BusConnection) -> Part:
    return Part("kafka", start=bus.start, stop=bus.stop)


def _intake(
    settings: IntakeSettings,
    *,
    broker: KafkaBroker,
    bus: BusConnection,
    redis: aioredis.Redis,
    tracer_provider: TracerProvider,
) -> Intake:
    """intake's dependencies: catalog, tracking codes, the publishers, guards, blob store and tracking's client."""
    tracking = TrackingClient(
        settings.tracking_url,
        timeout_s=settings.tracking_timeout_s,
        internal_key=settings.tracking_key.get_secret_value(),
    )
    HTTPXClientInstrumentor.instrument_client(tracking.http, tracer_provider=tracer_provider)

    async def publish(event: RequestSubmitted | Command) -> RecordMetadata:
        return await publish_event(broker, event, topic=Topic.REQUESTS, source=SOURCE)

    return Intake(
        catalog=load_catalog(settings.catalog_dir),
        generator=TrackingCodeGenerator(
            key=settings.tracking_code_key.get_secret_value().encode(), replica_id=settings.replica_id
        ),
        publish_submission=publish,
        publish_command=publish,
        is_connected=bus.connected.is_set,
        accept_window_s=settings.accept_window_s,
        grace_s=settings.accept_grace_s,
        idempotency=IdempotencyStore(redis, ttl_s=settings.idempotency_ttl_s),
        rate_limits=RateLimits(
            redis,
            per_client=settings.rate_limit_per_client,
            per_national_id=settings.rate_limit_per_national_id,
            uploads_per_client=settings.rate_limit_uploads_per_client,
            national_id_key=settings.rate_limit_key.get_secret_value().encode(),
        ),
        blob_store=blob_store_from_settings(settings),
        tracking=tracking,
        agency_keys=AgencyKeys.load(settings.agency_keys_file),
        settle_s=settings.command_settle_s,
        settle_poll_s=settings.command_settle_poll_s,
    )
