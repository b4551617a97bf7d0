"""tracking's composition root: settings, telemetry, database, broker, subscriber, outbox relay, routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import text
from sqlmodel import SQLModel

from shared.db import make_engine, make_sessionmaker
from shared.http import COMMON_PROBLEM_RESPONSES, install_http_metrics, install_problem_handlers, operations_router
from shared.kafka import BusConnection, make_broker
from shared.telemetry import make_tracer_provider
from shared.topics import core_topics

from .api import router
from .handlers import Tracking, build_router
from .models import TABLES
from .outbox import OutboxRelay
from .settings import TrackingSettings

SERVICE_NAME = "tracking"


def create_app(settings: TrackingSettings | None = None, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build tracking: the projection's tables are created before the subscriber starts folding."""
    settings = settings or TrackingSettings()
    provider = tracer_provider or make_tracer_provider(SERVICE_NAME, deployment=settings.deployment)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    broker = make_broker(kafka=settings.kafka, client_id=SERVICE_NAME, tracer_provider=provider)
    relay = OutboxRelay(
        sessions=sessions, broker=broker, tracer=provider.get_tracer(SERVICE_NAME), poll_s=settings.outbox_poll_s
    )
    deps = Tracking(sessions=sessions, lookup_key=settings.lookup_key.get_secret_value().encode(), relay=relay)
    broker.include_router(
        build_router(deps, group_id=settings.group_id, new_projection_start=settings.new_projection_start)
    )
    bus = BusConnection(broker, kafka=settings.kafka, topics=core_topics())

    async def database_ready() -> bool:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=TABLES))
        bus.start()

        async def relay_when_connected() -> None:
            await bus.connected.wait()
            await relay.run()

        relay_task = asyncio.create_task(relay_when_connected(), name="outbox-relay")
        yield
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task
        await bus.stop()
        await engine.dispose()

    app = FastAPI(
        title="Khedmat tracking",
        version=settings.deployment.service_version,
        description="Where a request stands: status, timeline and what it waits for (پیگیری درخواست).",
        lifespan=lifespan,
        responses=COMMON_PROBLEM_RESPONSES,
    )
    app.state.tracking = deps
    app.state.bus = bus
    install_problem_handlers(app)
    install_http_metrics(app, service=SERVICE_NAME)
    app.include_router(router)
    app.include_router(
        operations_router(service=SERVICE_NAME, readiness_checks={"kafka": bus.ready, "database": database_ready})
    )
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="healthz,readyz,metrics")
    return app
