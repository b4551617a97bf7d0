"""inquiry's composition root: settings, telemetry, database, broker, agency clients, subscribers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import text

from shared.catalog import load_catalog
from shared.db import make_engine, make_sessionmaker
from shared.edges import service_app
from shared.http import install_http_metrics, install_problem_handlers, operations_router
from shared.kafka import BusConnection, DeadLetterPolicy, make_broker
from shared.redis_client import make_redis
from shared.subscriptions import ConsumerParts, build_consumers
from shared.telemetry import make_tracer_provider
from shared.topics import TopicSpec, agency_inbox_topic, core_topics

from .adapters_cache import with_cache
from .adapters_resilience import AgencyRateLimit, AnswerCache, CircuitBreaker, ResilientGuard
from .consumers import Inquiry, publications, subscriptions
from .service import http_agencies
from .settings import InquirySettings
from .store import PublishMarks, create_tables

SERVICE_NAME = "inquiry"


def create_app(settings: InquirySettings | None = None, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build inquiry: its tables are created before its subscribers start, on the broker started in the lifespan."""
    settings = settings or InquirySettings()
    provider = tracer_provider or make_tracer_provider(SERVICE_NAME, deployment=settings.deployment)
    engine = make_engine(settings.database_url)
    dead_letters = DeadLetterPolicy()
    broker = make_broker(
        kafka=settings.kafka, client_id=SERVICE_NAME, tracer_provider=provider, dead_letters=dead_letters
    )
    # Shared by every replica: the per-agency rate limit (Redis). Per replica: the circuit breakers.
    redis = make_redis(settings.redis.url)
    guard = ResilientGuard(
        lambda agency: CircuitBreaker(
            agency,
            failure_threshold=settings.breaker_failure_threshold,
            window=settings.breaker_window,
            reset_timeout_s=settings.breaker_reset_s,
        ),
        AgencyRateLimit(redis, settings.agency_rate_limits, max_wait_s=settings.rate_limit_max_wait_s),
    )
    agencies, clients = http_agencies(
        settings.agencies_base_url,
        timeout_s=settings.call_timeout_s,
        max_attempts=settings.max_attempts,
        guard=guard,
    )
    for client in clients:
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
    cache = AnswerCache(redis, hmac_key=settings.cache_key.get_secret_value().encode())
    catalog = load_catalog(settings.catalog_dir)
    sessions = make_sessionmaker(engine)
    marks = PublishMarks(sessions)
    deps = Inquiry(catalog=catalog, agencies=with_cache(agencies, cache), broker=broker, sessions=sessions, marks=marks)
    declared = subscriptions(deps, group_id=settings.group_id, concurrency=settings.concurrency)
    [consumer] = build_consumers(declared, ConsumerParts(settings.kafka, dead_letters, SERVICE_NAME, provider))
    # Reviews go to the agency that offers the service: those agencies get an inbox.
    agency_ids = sorted({service.agency for service in catalog.all()})
    inboxes = [TopicSpec(agency_inbox_topic(agency)) for agency in agency_ids]
    bus = BusConnection(broker, kafka=settings.kafka, topics=core_topics() + inboxes, consumers=[consumer])

    async def database_ready() -> bool:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await create_tables(engine)
        marks.start()
        bus.start()
        yield
        await bus.stop()
        await marks.stop()
        for client in clients:
            await client.aclose()
        await redis.aclose()
        await engine.dispose()

    app = service_app(
        http=settings.http, title="Khedmat inquiry", version=settings.deployment.service_version, lifespan=lifespan
    )
    app.state.bus = bus
    app.state.consumer = consumer
    app.state.subscriptions = declared
    app.state.publications = publications(agencies=agency_ids)
    install_problem_handlers(app)
    install_http_metrics(app, service=SERVICE_NAME)
    app.include_router(
        operations_router(
            service=SERVICE_NAME,
            readiness_checks={"kafka": bus.ready, "database": database_ready},
            degraded_checks={"redis": redis.ping},
        )
    )
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="healthz,readyz,metrics")
    return app
