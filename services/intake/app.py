"""intake's composition root: settings, telemetry, broker, catalog, tracking codes, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from shared.catalog import load_catalog
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.edges import service_app
from shared.events import RequestSubmitted
from shared.http import COMMON_PROBLEM_RESPONSES, install_http_metrics, install_problem_handlers, operations_router
from shared.kafka import BusConnection, make_broker
from shared.redis_client import make_redis
from shared.telemetry import make_tracer_provider
from shared.topics import Topic, core_topics

from .api import router
from .catalog_api import catalog_router
from .commands_api import build_commands
from .commands_api import router as commands_router
from .documents import blob_store_from_settings
from .documents_api import UPLOAD_PATH
from .documents_api import router as documents_router
from .guards import IdempotencyStore, RateLimits
from .settings import IntakeSettings
from .wiring import Intake

SERVICE_NAME = "intake"


def create_app(settings: IntakeSettings | None = None, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build intake: one FastAPI app whose lifespan connects the Kafka producer."""
    settings = settings or IntakeSettings()
    provider = tracer_provider or make_tracer_provider(SERVICE_NAME, deployment=settings.deployment)
    broker = make_broker(kafka=settings.kafka, client_id=SERVICE_NAME, tracer_provider=provider)
    # Declared for the AsyncAPI document: what intake puts on the bus.
    broker.publisher(
        Topic.REQUESTS,
        title="desk.requests:RequestSubmitted",
        description="A citizen's request, keyed by tracking code; sent with acks=all before intake answers 202.",
        schema=RequestSubmitted,
    )
    bus = BusConnection(broker, kafka=settings.kafka, topics=core_topics())
    # One Redis client (short timeouts, no retries) shared by idempotency keys and rate limits.
    redis = make_redis(settings.redis.url)
    intake = Intake(
        catalog=load_catalog(settings.catalog_dir),
        generator=TrackingCodeGenerator(
            key=settings.tracking_code_key.get_secret_value().encode(), replica_id=settings.replica_id
        ),
        broker=broker,
        bus=bus,
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
    )

    commands = build_commands(settings, broker=broker, bus=bus, catalog=intake.catalog, tracer_provider=provider)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        bus.start()
        yield
        await bus.stop()
        await commands.aclose()
        await redis.aclose()

    app = service_app(
        http=settings.http,
        # The upload route bounds its own body: its limit is the catalog's largest document (documents_api.py).
        body_limits={UPLOAD_PATH: None},
        title="Khedmat intake",
        version=settings.deployment.service_version,
        description="The service catalog and the command side of the service desk (میز خدمت).",
        lifespan=lifespan,
        responses=COMMON_PROBLEM_RESPONSES,
    )
    app.state.intake = intake
    app.state.bus = bus
    app.state.settings = settings
    app.state.commands = commands
    install_problem_handlers(app)
    install_http_metrics(app, service=SERVICE_NAME)
    app.include_router(router)
    app.include_router(catalog_router)
    app.include_router(commands_router)
    app.state.blob_store = blob_store_from_settings(settings)
    app.include_router(documents_router)
    app.include_router(
        operations_router(
            service=SERVICE_NAME,
            readiness_checks={"kafka": bus.ready},
            degraded_checks={"redis": redis.ping},
        )
    )
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="healthz,readyz,metrics")
    return app
