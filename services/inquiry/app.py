"""inquiry's composition root: settings, telemetry, database, broker, agency clients, subscribers."""

from __future__ import annotations

from functools import partial

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from shared.catalog import load_catalog
from shared.db import make_engine, make_sessionmaker
from shared.redis_client import make_redis
from shared.service_kit import Part, ServiceKit, closing
from shared.topics import TopicSpec, agency_inbox_topic, core_topics

from .adapters_agencies import Agencies, http_agencies
from .adapters_cache import with_cache
from .adapters_resilience import AgencyRateLimit, AnswerCache, CircuitBreaker, ResilientGuard
from .consumers import Inquiry, publications, subscriptions
from .settings import InquirySettings
from .store import PublishMarks, create_tables

SERVICE_NAME = "inquiry"


def create_app(settings: InquirySettings | None = None, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build inquiry: its tables are created before its subscribers start, on the broker started in the lifespan."""
    settings = settings or InquirySettings()
    kit = ServiceKit.of(SERVICE_NAME, settings, tracer_provider)
    engine = make_engine(settings.database_url)
    redis = make_redis(settings.redis.url)
    agencies, clients = _agencies(settings, redis=redis, tracer_provider=kit.tracer_provider)
    cache = AnswerCache(redis, hmac_key=settings.cache_key.get_secret_value().encode())
    catalog = load_catalog(settings.catalog_dir)
    sessions = make_sessionmaker(engine)
    marks = PublishMarks(sessions)
    deps = Inquiry(
        catalog=catalog,
        agencies=with_cache(agencies, cache),
        broker=kit.broker,
        sessions=sessions,
        marks=marks,
        audit_key=settings.audit.subject_key.get_secret_value().encode(),
    )
    declared = subscriptions(deps, group_id=settings.group_id, concurrency=settings.concurrency)
    [consumer] = kit.consumers(declared)
    # Reviews go to the agency that offers the service: those agencies get an inbox.
    agency_ids = sorted({service.agency for service in catalog.all()})
    inboxes = [TopicSpec(agency_inbox_topic(agency)) for agency in agency_ids]
    bus = kit.bus(core_topics() + inboxes, [consumer])
    return kit.app(
        title="Khedmat inquiry",
        description="",
        routers=[],
        # Started in order, stopped in reverse: the tables before the publish marks and the bus, and at stop
        # the bus first (its consumers drain), then the marks, the agency clients, Redis, the database.
        parts=[
            Part("database", start=partial(create_tables, engine), stop=engine.dispose),
            closing("redis", redis.aclose),
            *[closing("agency client", client.aclose) for client in clients],
            Part("publish marks", start=marks.start, stop=marks.stop),
            Part("kafka", start=bus.start, stop=bus.stop),
        ],
        bus=bus,
        database=engine,
        redis=redis,
        state={"consumer": consumer, "subscriptions": declared, "publications": publications(agencies=agency_ids)},
        # Its API document lists no common problems: inquiry has only the operations routes.
        responses={},
    )


def _agencies(
    settings: InquirySettings, *, redis: aioredis.Redis, tracer_provider: TracerProvider
) -> tuple[Agencies, list[httpx.AsyncClient]]:
    """The agencies' HTTP clients behind their guard, and the clients to close at stop."""
    # Shared by every replica: the per-agency rate limit (Redis). Per replica: the circuit breakers.
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
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=tracer_provider)
    return agencies, clients
