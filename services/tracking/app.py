"""tracking's composition root: settings, telemetry, database, consumers, outbox relay, SLA watcher, access audit,
routes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import partial

import redis.asyncio as aioredis
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.access_audit import AccessRecorder
from shared.catalog import Catalog, load_catalog
from shared.db import make_engine, make_sessionmaker
from shared.domain.working_days import load_calendar, tehran_day
from shared.events import SlaBreached
from shared.kafka import BusConnection, publish_event
from shared.redis_client import make_redis
from shared.service_kit import Part, ServiceKit, closing, supervised
from shared.sessions import SESSION_VERIFIER_STATE, IdentityJwks, session_verifier
from shared.subscriptions import Subscription
from shared.topics import Topic, core_topics

from .access_api import router as access_router
from .adapters_cache import ChangeFeed, StatusCache
from .adapters_throttle import LookupThrottle
from .consumers import PUBLICATIONS, Tracking, projection_consumer, subscriptions
from .domain import Names
from .domain_terms import catalog_names, catalog_terms
from .history_api import router as history_router
from .internal_api import internal_router
from .lookup_api import router
from .service import Projector
from .service_audit import AccessChain
from .service_outbox import OutboxRelay
from .service_sla import SlaWatcher
from .settings import TrackingSettings
from .store import Sessions
from .store_migrations import migrate

SERVICE_NAME = "tracking"

log = logging.getLogger(__name__)
SOURCE = "/khedmat/tracking"


def create_app(settings: TrackingSettings | None = None, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build tracking: the projection's tables are created before the consumer starts folding."""
    settings = settings or TrackingSettings()
    kit = ServiceKit.of(SERVICE_NAME, settings, tracer_provider)
    provider = kit.tracer_provider
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    lookup_key = settings.lookup_key.get_secret_value().encode()
    relay = OutboxRelay(
        sessions=sessions, broker=kit.broker, tracer=provider.get_tracer(SERVICE_NAME), poll_s=settings.outbox_poll_s
    )
    catalog = load_catalog(settings.catalog_dir)
    projector = _projector(
        settings, sessions=sessions, lookup_key=lookup_key, catalog=catalog, tracer_provider=provider
    )
    redis = make_redis(settings.redis.url)
    deps = _tracking(settings, sessions=sessions, redis=redis, lookup_key=lookup_key, names=catalog_names(catalog))
    verifier, jwks = session_verifier(settings.sessions, redis)
    projector.on_committed = deps.cache.changed
    chain = AccessChain(sessions, max_batch=settings.access_concurrency)
    declared = _subscriptions(settings, projector=projector, relay=relay, deps=deps, chain=chain)
    consumers = kit.consumers(declared)
    watcher = _sla_watcher(settings, sessions=sessions, broker=kit.broker)
    bus = kit.bus(core_topics(), consumers)
    return kit.app(
        title="Khedmat tracking",
        description="Where a request stands: status, timeline and what it waits for (پیگیری درخواست).",
        routers=[router, history_router, access_router, internal_router],
        parts=_parts(
            engine, redis=redis, deps=deps, bus=bus, relay=relay, watcher=watcher, chain=chain, identity_keys=jwks
        ),
        bus=bus,
        database=engine,
        redis=redis,
        state={
            "tracking": deps,
            SESSION_VERIFIER_STATE: verifier,
            "internal_key": settings.internal_key.get_secret_value().encode(),
            "consumer": consumers[0],
            "access_recorder": AccessRecorder.on_broker(kit.broker, settings=settings.audit, service=SERVICE_NAME),
            "subscriptions": declared,
            "publications": PUBLICATIONS,
        },
    )


def _subscriptions(
    settings: TrackingSettings, *, projector: Projector, relay: OutboxRelay, deps: Tracking, chain: AccessChain
) -> list[Subscription]:
    """tracking's subscriptions: the projection's fold, the notification outcomes, the access records."""
    return subscriptions(
        group_id=settings.group_id,
        projection=projection_consumer(
            projector,
            new_projection_start=settings.new_projection_start,
            on_folded=lambda changes: relay.wakeup.set() if changes else None,
        ),
        max_batch=settings.fold_batch,
        sessions=deps.sessions,
        on_stored=deps.cache.changed,
        notifications_concurrency=settings.notifications_concurrency,
        access_chain=chain,
        access_concurrency=settings.access_concurrency,
    )


def _parts(
    engine: AsyncEngine,
    *,
    redis: aioredis.Redis,
    deps: Tracking,
    bus: BusConnection,
    relay: OutboxRelay,
    watcher: SlaWatcher,
    chain: AccessChain,
    identity_keys: IdentityJwks,
) -> list[Part]:
    """tracking's parts, started in order and stopped in reverse: the migrations first; at stop the outbox relay
    and the SLA watcher are cancelled, then the bus (its consumers drain), then the change feed, the client of
    identity's keys, Redis, the access chain's writer, the database."""
    return [
        Part("database", start=partial(migrate, engine), stop=engine.dispose),
        closing("access chain", chain.close),
        closing("redis", redis.aclose),
        closing("identity keys client", identity_keys.aclose),
        Part("change feed", start=deps.changes.start, stop=deps.changes.stop),
        Part("kafka", start=bus.start, stop=bus.stop),
        # They wait for the bus; one that crashes is restarted with a logged error rather than left dead (a dead
        # relay would stop StatusChanged being published until the pod restarts).
        supervised("outbox-relay", relay.run, when=bus.connected.wait),
        supervised("sla-watcher", watcher.run, when=bus.connected.wait),
    ]


def _sla_watcher(settings: TrackingSettings, *, sessions: Sessions, broker: KafkaBroker) -> SlaWatcher:
    """The SLA watcher, publishing each breach to desk.requests."""

    async def publish_breach(event: SlaBreached) -> object:
        return await publish_event(broker, event, topic=Topic.REQUESTS, source=SOURCE)

    return SlaWatcher(sessions=sessions, publish=publish_breach, poll_s=settings.sla_check_s)


def _projector(
    settings: TrackingSettings,
    *,
    sessions: Sessions,
    lookup_key: bytes,
    catalog: Catalog,
    tracer_provider: TracerProvider,
) -> Projector:
    """The projection's folder, with the catalog's terms and the working-day calendar."""
    calendar = load_calendar()
    a_year_on = tehran_day(datetime.now(UTC)) + timedelta(days=365)
    if not calendar.covers(a_year_on):
        # Due dates past the file's last year would count only the weekend: the file needs its next year.
        log.warning("the holidays file does not cover %s: due dates after its last year ignore holidays", a_year_on)
    return Projector(
        sessions,
        lookup_key,
        catalog_terms(catalog),
        calendar,
        tracer=tracer_provider.get_tracer(SERVICE_NAME),
        consumer_group=settings.group_id,
    )


def _tracking(
    settings: TrackingSettings, *, sessions: Sessions, redis: aioredis.Redis, lookup_key: bytes, names: Names
) -> Tracking:
    """The routes' dependencies: the lookup throttle, the status cache and its change feed, the catalog's names."""
    cache = StatusCache(redis, key=lookup_key, ttl_s=settings.lookup_cache_ttl_s)
    throttle = LookupThrottle(
        redis,
        per_client=settings.lookup_limit_per_client,
        failures_per_code=settings.lookup_failures_per_code,
        successes_per_code=settings.lookup_successes_per_code,
        code_key=lookup_key,
    )
    return Tracking(
        sessions=sessions,
        lookup_key=lookup_key,
        throttle=throttle,
        cache=cache,
        changes=ChangeFeed(redis, cache, poll_s=settings.stream_poll_s),
        stream_max_s=settings.stream_max_s,
        names=names,
    )
