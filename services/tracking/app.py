"""tracking's composition root: settings, telemetry, database, consumers, outbox relay, SLA watcher, routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import text

from shared.catalog import load_catalog
from shared.db import make_engine, make_sessionmaker
from shared.domain.working_days import load_calendar, tehran_day
from shared.edges import service_app
from shared.events import SlaBreached
from shared.http import COMMON_PROBLEM_RESPONSES, install_http_metrics, install_problem_handlers, operations_router
from shared.kafka import BusConnection, DeadLetterPolicy, make_broker, publish_event
from shared.redis_client import make_redis
from shared.subscriptions import ConsumerParts, build_consumers
from shared.telemetry import make_tracer_provider
from shared.topics import Topic, core_topics

from .adapters_cache import ChangeFeed, StatusCache
from .adapters_throttle import LookupThrottle
from .consumers import PUBLICATIONS, Tracking, projection_consumer, subscriptions
from .domain_terms import catalog_terms
from .history_api import router as history_router
from .internal_api import internal_router
from .lookup_api import router
from .service import Projector
from .service_history import HistoryTokens, NotifyCodeSender, OneTimeCodes
from .service_outbox import OutboxRelay
from .service_sla import SlaWatcher
from .settings import TrackingSettings
from .store_migrations import migrate

SERVICE_NAME = "tracking"

log = logging.getLogger(__name__)
SOURCE = "/khedmat/tracking"


def create_app(settings: TrackingSettings | None = None, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build tracking: the projection's tables are created before the consumer starts folding."""
    settings = settings or TrackingSettings()
    provider = tracer_provider or make_tracer_provider(SERVICE_NAME, deployment=settings.deployment)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    dead_letters = DeadLetterPolicy()
    broker = make_broker(
        kafka=settings.kafka, client_id=SERVICE_NAME, tracer_provider=provider, dead_letters=dead_letters
    )
    lookup_key = settings.lookup_key.get_secret_value().encode()
    relay = OutboxRelay(
        sessions=sessions, broker=broker, tracer=provider.get_tracer(SERVICE_NAME), poll_s=settings.outbox_poll_s
    )
    calendar = load_calendar()
    a_year_on = tehran_day(datetime.now(UTC)) + timedelta(days=365)
    if not calendar.covers(a_year_on):
        # Due dates past the file's last year would count only the weekend: the file needs its next year.
        log.warning("the holidays file does not cover %s: due dates after its last year ignore holidays", a_year_on)
    projector = Projector(
        sessions,
        lookup_key,
        catalog_terms(load_catalog(settings.catalog_dir)),
        calendar,
        tracer=provider.get_tracer(SERVICE_NAME),
        consumer_group=settings.group_id,
    )
    redis = make_redis(settings.redis.url)
    throttle = LookupThrottle(
        redis,
        per_client=settings.lookup_limit_per_client,
        per_code=settings.lookup_limit_per_code,
        code_key=lookup_key,
    )
    cache = StatusCache(redis, key=lookup_key, ttl_s=settings.lookup_cache_ttl_s)
    changes = ChangeFeed(redis, cache, poll_s=settings.stream_poll_s)
    projector.on_committed = cache.changed

    declared = subscriptions(
        group_id=settings.group_id,
        projection=projection_consumer(
            projector,
            new_projection_start=settings.new_projection_start,
            on_folded=lambda changes: relay.wakeup.set() if changes else None,
        ),
        max_batch=settings.fold_batch,
        sessions=sessions,
        on_stored=cache.changed,
        notifications_concurrency=settings.notifications_concurrency,
    )
    consumer, outcomes = build_consumers(declared, ConsumerParts(settings.kafka, dead_letters, SERVICE_NAME, provider))
    deps = Tracking(
        sessions=sessions,
        lookup_key=lookup_key,
        throttle=throttle,
        cache=cache,
        changes=changes,
        stream_max_s=settings.stream_max_s,
        tokens=HistoryTokens(lookup_key, ttl_s=settings.history_token_ttl_s),
        code_throttle=LookupThrottle(
            redis,
            per_client=settings.one_time_code_limit_per_client,
            per_code=settings.one_time_code_limit_per_national_id,
            code_key=lookup_key,
            key_prefix="khedmat:tracking:one-time-code",
        ),
        codes=OneTimeCodes(redis, key=lookup_key, ttl_s=settings.one_time_code_ttl_s),
        code_sender=NotifyCodeSender(settings.notify_url, internal_key=settings.notify_key.get_secret_value()),
    )

    async def publish_breach(event: SlaBreached) -> object:
        return await publish_event(broker, event, topic=Topic.REQUESTS, source=SOURCE)

    watcher = SlaWatcher(sessions=sessions, publish=publish_breach, poll_s=settings.sla_check_s)
    bus = BusConnection(broker, kafka=settings.kafka, topics=core_topics(), consumers=[consumer, outcomes])

    async def database_ready() -> bool:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await migrate(engine)
        bus.start()
        changes.start()

        def when_connected(name: str, work: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
            async def run() -> None:
                await bus.connected.wait()
                await work()

            return asyncio.create_task(run(), name=name)

        tasks = [when_connected("outbox-relay", relay.run), when_connected("sla-watcher", watcher.run)]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bus.stop()
        await changes.stop()
        await deps.code_sender.aclose()
        await redis.aclose()
        await engine.dispose()

    app = service_app(
        http=settings.http,
        title="Khedmat tracking",
        version=settings.deployment.service_version,
        description="Where a request stands: status, timeline and what it waits for (پیگیری درخواست).",
        lifespan=lifespan,
        responses=COMMON_PROBLEM_RESPONSES,
    )
    app.state.tracking = deps
    app.state.internal_key = settings.internal_key.get_secret_value().encode()
    app.state.bus = bus
    app.state.consumer = consumer
    app.state.subscriptions = declared
    app.state.publications = PUBLICATIONS
    install_problem_handlers(app)
    install_http_metrics(app, service=SERVICE_NAME)
    app.include_router(router)
    app.include_router(history_router)
    app.include_router(internal_router)
    app.include_router(
        operations_router(
            service=SERVICE_NAME,
            readiness_checks={"kafka": bus.ready, "database": database_ready},
            degraded_checks={"redis": redis.ping},
        )
    )
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="healthz,readyz,metrics")
    return app
