"""One submitted request is one trace: every consume in inquiry, tracking and notify descends from intake's span.

The four services and the sandbox run in this process (so an in-memory exporter sees every span) but talk
only through the real Kafka broker and real HTTP, exactly as they do as separate processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from sandbox.runner import SandboxEndpoints, serve_sandbox
from sandbox.settings import SandboxSettings
from services.inquiry.app import create_app as create_inquiry
from services.inquiry.settings import InquirySettings
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.tracking.app import create_app as create_tracking
from services.tracking.settings import TrackingSettings
from shared.domain.tracking_code import format_for_display
from shared.settings import KafkaSettings, RedisSettings
from shared.telemetry import make_tracer_provider
from shared.topics import Topic
from testkit.data import submission
from testkit.infra import Servers
from testkit.kafka_tools import start_group_at_end
from tests.asgi import asgi_client


@contextlib.asynccontextmanager
async def sandbox() -> AsyncIterator[SandboxEndpoints]:
    stop = asyncio.Event()
    ready: asyncio.Future[SandboxEndpoints] = asyncio.get_running_loop().create_future()
    settings = SandboxSettings(agencies_port=0, sms_port=0, smtp_port=0, smtp_http_port=0)
    task = asyncio.create_task(serve_sandbox(settings, stop=stop, on_ready=ready.set_result))
    try:
        yield await asyncio.wait_for(ready, 30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def poll(check: Any, timeout_s: float) -> Any:
    async with asyncio.timeout(timeout_s):
        while not (result := await check()):
            await asyncio.sleep(0.2)
        return result


def destination(span: ReadableSpan) -> object:
    """The topic a consume span read from (faststream names it per the messaging semantic conventions)."""
    attributes = span.attributes or {}
    return attributes.get("messaging.destination.name") or attributes.get("messaging.destination_publish.name")


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


async def test_one_request_yields_one_trace_across_all_four_services(
    kafka_settings: KafkaSettings, servers: Servers, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    providers: list[TracerProvider] = []

    def provider(name: str) -> TracerProvider:
        made = make_tracer_provider(name)
        made.add_span_processor(SimpleSpanProcessor(exporter))
        providers.append(made)
        return made

    # Fresh groups start after what earlier tests left on the topics: this test needs only its own request.
    for group, topic in (
        ("trace-inquiry", Topic.REQUESTS),
        ("trace-tracking", Topic.REQUESTS),
        ("trace-notify-contacts", Topic.REQUESTS),
        ("trace-notify", Topic.STATUS),
    ):
        await start_group_at_end(servers.kafka_bootstrap, group, topic)

    def consuming(name: str) -> dict[str, Any]:
        """The settings every consuming service here shares: the test's Kafka, a group and a database of its own."""
        return {
            "kafka": kafka_settings,
            "group_id": f"trace-{name}",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}",
        }

    async with sandbox() as endpoints, contextlib.AsyncExitStack() as running:
        apps: dict[str, FastAPI] = {
            "intake": create_intake(
                IntakeSettings(
                    kafka=kafka_settings, redis=RedisSettings(url=servers.redis_url), blob_dir=tmp_path / "blobs"
                ),
                tracer_provider=provider("intake"),
            ),
            "inquiry": create_inquiry(
                InquirySettings(**consuming("inquiry"), agencies_base_url=endpoints.agencies_url),
                tracer_provider=provider("inquiry"),
            ),
            "tracking": create_tracking(
                TrackingSettings(
                    **consuming("tracking"),
                    new_projection_start="group",
                    lookup_failures_per_code="100000/minute",
                ),
                tracer_provider=provider("tracking"),
            ),
            "notify": create_notify(
                NotifySettings(
                    **consuming("notify"),
                    sms_base_url=endpoints.sms_url,
                    smtp_host=endpoints.smtp_host,
                    smtp_port=endpoints.smtp_port,
                ),
                tracer_provider=provider("notify"),
            ),
        }
        for app in apps.values():
            await running.enter_async_context(app.router.lifespan_context(app))
        for app in apps.values():
            await app.state.bus.wait(60)

        def client(name: str) -> httpx.AsyncClient:
            return asgi_client(apps[name], f"http://{name}")

        body = submission()
        async with client("intake") as intake, client("tracking") as tracking, httpx.AsyncClient() as web:
            accepted = await intake.post("/api/v1/requests", json=body)
            assert accepted.status_code == 202, accepted.text
            code = accepted.json()["tracking_code"]

            async def approved() -> bool:
                found = await tracking.post(
                    "/api/v1/tracking/lookup",
                    json={"tracking_code": code, "national_id": body["applicant"]["national_id"]},
                )
                return found.status_code == 200 and found.json()["status"] == "APPROVED"

            async def texted_approval() -> bool:
                messages = (await web.get(endpoints.sms_url + "/messages")).json()
                return len([m for m in messages if format_for_display(code) in m["message"]]) >= 3

            await poll(approved, 30)
            await poll(texted_approval, 30)

    for made in providers:
        made.force_flush()
    spans = list(exporter.get_finished_spans())
    [root] = [
        s
        for s in spans
        if s.kind is SpanKind.SERVER
        and s.resource.attributes["service.name"] == "intake"
        and (s.attributes or {}).get("http.route") == "/api/v1/requests"
    ]
    trace_id = root.context.trace_id
    by_id = {s.context.span_id: s for s in spans if s.context.trace_id == trace_id}
    consumers = [s for s in by_id.values() if s.kind is SpanKind.CONSUMER]
    services_consuming = {s.resource.attributes["service.name"] for s in consumers}
    assert {"inquiry", "tracking", "notify"} <= services_consuming, services_consuming
    for span in consumers:
        assert root in ancestors(span, by_id), f"{span.name} in {span.resource.attributes['service.name']!r}"
        assert (span.attributes or {}).get("messaging.system") == "kafka"
        assert destination(span) in {"desk.requests", "desk.status"}
    # The agency call is a child in the same trace, and so is the SMS gateway call.
    clients = [s for s in by_id.values() if s.kind is SpanKind.CLIENT]
    assert any(s.resource.attributes["service.name"] == "inquiry" for s in clients)
    assert any(s.resource.attributes["service.name"] == "notify" for s in clients)
    notify_status = [
        s for s in consumers if s.resource.attributes["service.name"] == "notify" and destination(s) == "desk.status"
    ]
    assert len(notify_status) >= 3, "notify's consumption of each StatusChanged is in the request's trace"
    relays = [s for s in by_id.values() if s.name == "desk.status outbox relay"]
    assert relays and all(root in ancestors(s, by_id) for s in relays)
