"""inquiry's composition root: settings, telemetry, broker, agency clients, subscribers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from shared.catalog import load_catalog
from shared.http import install_http_metrics, install_problem_handlers, operations_router
from shared.kafka import BusConnection, make_broker
from shared.telemetry import make_tracer_provider
from shared.topics import core_topics

from .adapters import HttpCivilRegistry, make_agency_client
from .handlers import Inquiry, build_router
from .service import Agencies
from .settings import InquirySettings

SERVICE_NAME = "inquiry"


def create_app(settings: InquirySettings | None = None, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build inquiry: its subscribers run on the broker started in the FastAPI lifespan."""
    settings = settings or InquirySettings()
    provider = tracer_provider or make_tracer_provider(SERVICE_NAME, deployment=settings.deployment)
    broker = make_broker(kafka=settings.kafka, client_id=SERVICE_NAME, tracer_provider=provider)
    client = make_agency_client(settings.agencies_base_url, timeout_s=settings.call_timeout_s)
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
    deps = Inquiry(
        catalog=load_catalog(settings.catalog_dir),
        agencies=Agencies(civil_registry=HttpCivilRegistry(client, max_attempts=settings.max_attempts)),
        broker=broker,
    )
    broker.include_router(build_router(deps, group_id=settings.group_id))
    bus = BusConnection(broker, kafka=settings.kafka, topics=core_topics())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        bus.start()
        yield
        await bus.stop()
        await client.aclose()

    app = FastAPI(title="Khedmat inquiry", version=settings.deployment.service_version, lifespan=lifespan)
    app.state.bus = bus
    install_problem_handlers(app)
    install_http_metrics(app, service=SERVICE_NAME)
    app.include_router(operations_router(service=SERVICE_NAME, readiness_checks={"kafka": bus.ready}))
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="healthz,readyz,metrics")
    return app
