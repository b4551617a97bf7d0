"""notify's composition root: settings, telemetry, database, SMS and mail clients, subscribers, routes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from functools import partial

import redis.asyncio as aioredis
from fastapi import FastAPI
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.access_audit import AccessRecorder
from shared.catalog import load_catalog
from shared.db import make_engine, make_sessionmaker
from shared.events import NotificationOutcome
from shared.kafka import BusConnection, publish_event
from shared.rate_limits import PacedRate
from shared.redis_client import make_redis
from shared.service_kit import Part, ServiceKit, closing, supervised
from shared.topics import Topic, core_topics

from .adapters import FailoverSmsGateway, KavenegarSmsClient, SmtpEmailSender
from .adapters_templates import Renderer
from .consumers import PUBLICATIONS, subscriptions
from .domain import parse_quiet_hours
from .internal_api import internal_router
from .service import Notify, SendPolicy
from .service_receipts import publish_outcomes
from .service_sweeper import sweep
from .settings import NotifySettings
from .store import create_tables

SERVICE_NAME = "notify"

log = logging.getLogger(__name__)


async def sweep_when_due(notify: Notify, *, every_s: float) -> None:
    """Send what was recorded but not sent: held SMS once the quiet hours end, rows a crash left behind."""
    while True:
        try:
            while await sweep(sessions=notify.sessions, sms=notify.sms, email=notify.email, policy=notify.policy):
                pass  # a full batch may have more behind it
        except Exception as error:  # the database or the gateways hiccuped: the rows wait for the next round
            log.warning("sweeping unsent notifications failed: %s", type(error).__name__)
        await asyncio.sleep(every_s)


async def publish_outcomes_when_connected(notify: Notify, bus: BusConnection, *, every_s: float) -> None:
    """Relay notification outcomes to desk.notifications while the process runs."""
    await bus.connected.wait()

    async def publish(event: NotificationOutcome) -> object:
        return await publish_event(bus.broker, event, topic=Topic.NOTIFICATIONS, source="/khedmat/notify")

    while True:
        try:
            if await publish_outcomes(sessions=notify.sessions, publish=publish):
                continue
        except Exception as error:  # Kafka or the database hiccuped: the rows stay unmarked, next round
            log.warning("publishing notification outcomes failed: %s", type(error).__name__)
        await asyncio.sleep(every_s)


# What a send lease allows beyond the round's own timeouts: waiting for the provider's pace, a slow commit.
LEASE_MARGIN_S = 10.0


def send_policy(settings: NotifySettings, *, gateways: int) -> SendPolicy:
    """The send policy, with a lease just longer than the longest round of tries can take (each try may time
    out on every gateway in turn), so a live sender keeps its row and a dead one's row is swept soon."""
    policy = SendPolicy(stale_after_s=settings.stale_after_s)
    longest_round_s = policy.tries_per_delivery * (gateways * settings.send_timeout_s + policy.max_wait_s)
    return replace(policy, lease_s=longest_round_s + LEASE_MARGIN_S)


def create_app(settings: NotifySettings | None = None, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build notify: one FastAPI app whose lifespan creates the tables, then connects the consumers."""
    settings = settings or NotifySettings()
    kit = ServiceKit.of(SERVICE_NAME, settings, tracer_provider)
    engine = make_engine(settings.database_url)
    redis = make_redis(settings.redis.url)
    sms = _sms_gateway(settings, redis=redis, tracer_provider=kit.tracer_provider)
    notify = Notify(
        sessions=make_sessionmaker(engine),
        sms=sms,
        email=_email_sender(settings, redis=redis, tracer_provider=kit.tracer_provider),
        renderer=Renderer(load_catalog()),
        group_id=settings.group_id,
        contact_wait_s=settings.contact_wait_s,
        quiet=parse_quiet_hours(settings.quiet_hours),
        policy=send_policy(settings, gateways=len(sms.gateways)),
        audit_key=settings.audit.subject_key.get_secret_value().encode(),
    )
    declared = subscriptions(notify, concurrency=settings.concurrency)
    bus = kit.bus(core_topics(), kit.consumers(declared))
    return kit.app(
        title="Khedmat notify",
        description="Tells citizens by SMS and email when their request changes status (اطلاع‌رسانی).",
        routers=[internal_router],
        # Started in order, stopped in reverse. Tables first: a consumer that starts before them would fail its
        # first messages. At stop the background loops are cancelled first, then the bus (its consumers drain).
        parts=[
            Part("database", start=partial(_create_tables, engine), stop=engine.dispose),
            closing("redis", redis.aclose),
            closing("sms gateways", sms.aclose),
            Part("kafka", start=bus.start, stop=bus.stop),
            supervised("sweeper", partial(sweep_when_due, notify, every_s=settings.sweep_every_s)),
            supervised(
                "outcome relay",
                partial(publish_outcomes_when_connected, notify, bus, every_s=settings.outcome_every_s),
            ),
        ],
        bus=bus,
        database=engine,
        redis=redis,
        state={
            "notify": notify,
            "settings": settings,
            "subscriptions": declared,
            "publications": PUBLICATIONS,
            "access_recorder": AccessRecorder.on_broker(kit.broker, settings=settings.audit, service=SERVICE_NAME),
        },
        # Its API document lists only the problems its routes declare, not the kit's common ones.
        responses={},
    )


async def _create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_tables(conn)


def _sms_gateway(
    settings: NotifySettings, *, redis: aioredis.Redis, tracer_provider: TracerProvider
) -> FailoverSmsGateway:
    """The primary SMS gateway, and the fallback when one is configured, each paced through Redis."""
    gateways = [
        KavenegarSmsClient(
            base_url=settings.sms_base_url,
            api_key=settings.sms_api_key.get_secret_value(),
            sender=settings.sms_sender,
            timeout_s=settings.send_timeout_s,
            pace=PacedRate(redis, limit=settings.sms_rate_limit, name="sms-primary"),
        )
    ]
    if settings.sms_fallback_base_url:
        fallback_key = settings.sms_fallback_api_key or settings.sms_api_key
        gateways.append(
            KavenegarSmsClient(
                base_url=settings.sms_fallback_base_url,
                api_key=fallback_key.get_secret_value(),
                sender=settings.sms_fallback_sender or settings.sms_sender,
                timeout_s=settings.send_timeout_s,
                pace=PacedRate(
                    redis, limit=settings.sms_fallback_rate_limit or settings.sms_rate_limit, name="sms-fallback"
                ),
            )
        )
    for gateway in gateways:
        # The hook rewrites the span's URL: the API key sits in its path.
        HTTPXClientInstrumentor.instrument_client(
            gateway.http, tracer_provider=tracer_provider, request_hook=gateway.redact_span
        )
    return FailoverSmsGateway(
        list(gateways), names=["primary", "fallback"][: len(gateways)], retry_primary_s=settings.sms_retry_primary_s
    )


def _email_sender(
    settings: NotifySettings, *, redis: aioredis.Redis, tracer_provider: TracerProvider
) -> SmtpEmailSender:
    """The SMTP sender, paced through Redis."""
    return SmtpEmailSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        mail_from=settings.mail_from,
        starttls=settings.smtp_starttls,
        timeout_s=settings.send_timeout_s,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        tracer=tracer_provider.get_tracer(SERVICE_NAME),
        pace=PacedRate(redis, limit=settings.smtp_rate_limit, name="smtp"),
    )
