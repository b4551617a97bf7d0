"""A service's FastAPI app in one call, so each service's `app.py` is a short manifest of what it runs.

`build_service_app` puts together what every service has: the HTTP edge (security headers, CORS, body limits,
/docs; shared/edges.py), problem+json for every error and for the service's own use-case failures, the audit of
routes returning personal data (shared/access_audit.py), HTTP
metrics, /healthz, /readyz (Kafka and the database gate readiness, Redis only degrades it) and /metrics,
OpenTelemetry's FastAPI instrumentation, and a lifespan that starts the service's background `Part`s in order
and stops them in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.access_audit import install_personal_data
from shared.edges import service_app
from shared.http import (
    COMMON_PROBLEM_RESPONSES,
    Check,
    ProblemError,
    install_http_metrics,
    install_problem_handlers,
    operations_router,
    problem_response,
)
from shared.kafka import BusConnection, Consumer, DeadLetterPolicy, make_broker
from shared.settings import DeploymentSettings, HttpEdgeSettings, KafkaSettings
from shared.subscriptions import ConsumerParts, Subscription, build_consumers
from shared.tasks import cancel_and_wait
from shared.telemetry import make_tracer_provider
from shared.topics import TopicSpec

log = logging.getLogger(__name__)

T = TypeVar("T")
Step = Callable[[], Awaitable[None] | None]
# A use case's failure → its problem+json answer; each builder takes the exception it is registered for.
FailureProblems = Mapping[type[Exception], Callable[[Any], ProblemError]]

# Requests for these are not traced: probes and scrapes would drown the traces that matter.
UNTRACED_URLS = "healthz,readyz,metrics"


@dataclass(frozen=True)
class Part:
    """Something a service runs beside its routes (a Kafka connection, a loop, a client to close)."""

    name: str
    start: Step | None = None
    stop: Step | None = None


async def _run_step(step: Step | None) -> None:
    if step is None:
        return
    outcome = step()
    if inspect.isawaitable(outcome):
        await outcome


def closing(name: str, close: Step) -> Part:
    """A client the service only has to close at shutdown."""
    return Part(name, stop=close)


def supervised(
    name: str,
    work: Callable[[], Awaitable[None]],
    *,
    restart_after_s: float = 1.0,
    when: Callable[[], Awaitable[object]] | None = None,
) -> Part:
    """A background loop run as a task (after `when`, e.g. the bus connecting), restarted with a logged error
    whenever it fails, cancelled at stop; a loop that returns is not restarted."""
    task: asyncio.Task[None] | None = None

    async def run() -> None:
        if when is not None:
            await when()
        while True:
            try:
                await work()
                return
            except Exception:
                log.exception("%s failed; restarting in %.1fs", name, restart_after_s)
            await asyncio.sleep(restart_after_s)

    def start() -> None:
        nonlocal task
        task = asyncio.create_task(run(), name=name)

    async def stop() -> None:
        await cancel_and_wait(task)

    return Part(name, start=start, stop=stop)


def lifespan_of(parts: Sequence[Part]) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan that starts `parts` in order and stops the started ones in reverse, each stop logged if it fails
    (so one failing stop does not leave the others running)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        started: list[Part] = []
        try:
            for part in parts:
                await _run_step(part.start)
                started.append(part)
            yield
        finally:
            for part in reversed(started):
                try:
                    await _run_step(part.stop)
                except Exception:
                    log.exception("stopping %s failed", part.name)

    return lifespan


def database_check(engine: AsyncEngine) -> Check:
    """Readiness: the database answers a query."""

    async def database_ready() -> bool:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True

    return database_ready


def redis_check(redis: aioredis.Redis) -> Check:
    """Degraded, not unready, when Redis does not answer."""

    async def redis_up() -> bool:
        return bool(await redis.ping())

    return redis_up


def install_failure_problems(app: FastAPI, failures: FailureProblems) -> None:
    """Answer each listed use-case failure with its problem+json (the most specific class registered wins)."""
    for failure, problem_for in failures.items():
        app.add_exception_handler(failure, _answer_with(problem_for))


def _answer_with(
    problem_for: Callable[[Any], ProblemError],
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def answer(request: Request, exc: Exception) -> JSONResponse:
        problem = problem_for(exc)
        return problem_response(problem.to_problem(request.url.path), problem.headers)

    return answer


def state_dependency(name: str, kind: type[T]) -> Callable[[Request], T]:
    """A FastAPI dependency for what the composition root put on `app.state.<name>`."""

    def dependency(request: Request) -> T:
        value = getattr(request.app.state, name)
        if not isinstance(value, kind):
            raise TypeError(f"app.state.{name} is a {type(value).__name__}, not a {kind.__name__}")
        return value

    return dependency


def build_service_app(
    *,
    service: str,
    title: str,
    description: str,
    version: str,
    http: HttpEdgeSettings,
    tracer_provider: TracerProvider,
    routers: Sequence[APIRouter],
    parts: Sequence[Part] = (),
    bus: BusConnection | None = None,
    database: AsyncEngine | None = None,
    redis: aioredis.Redis | None = None,
    failures: FailureProblems | None = None,
    state: Mapping[str, object] | None = None,
    body_limits: Mapping[str, int | None] | None = None,
    responses: Mapping[int | str, dict[str, Any]] = COMMON_PROBLEM_RESPONSES,
) -> FastAPI:
    """One service's app: edges, problem+json, metrics, operations routes, tracing, and its parts' lifespan.

    `bus` and `database` gate /readyz, `redis` only degrades it; `state` goes on `app.state` (with `bus` as
    `app.state.bus`, where tools/apidocs finds the broker).
    """
    app = service_app(
        http=http,
        body_limits=body_limits,
        title=title,
        version=version,
        description=description,
        lifespan=lifespan_of(parts),
        responses=dict(responses),
    )
    for name, value in {**(state or {}), **({"bus": bus} if bus is not None else {})}.items():
        setattr(app.state, name, value)
    install_problem_handlers(app)
    install_failure_problems(app, failures or {})
    install_http_metrics(app, service=service)
    for router in routers:
        app.include_router(router)
    # Routes declaring personal data: marked in OpenAPI, and refused with 503 when the access is not recorded.
    install_personal_data(app)
    readiness: dict[str, Check] = {}
    if bus is not None:
        readiness["kafka"] = bus.ready
    if database is not None:
        readiness["database"] = database_check(database)
    degraded = {"redis": redis_check(redis)} if redis is not None else {}
    app.include_router(operations_router(service=service, readiness_checks=readiness, degraded_checks=degraded))
    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider, excluded_urls=UNTRACED_URLS)
    return app


class KitSettings(Protocol):
    """What the kit reads of a service's settings (every service's settings class has these)."""

    @property
    def kafka(self) -> KafkaSettings: ...

    @property
    def deployment(self) -> DeploymentSettings: ...

    @property
    def http(self) -> HttpEdgeSettings: ...


@dataclass(frozen=True)
class ServiceKit:
    """What every service builds first from its settings (its tracer provider and its broker), and the calls
    that build the rest the same way in every service: its consumers, its bus connection and its app."""

    name: str
    settings: KitSettings
    tracer_provider: TracerProvider
    broker: KafkaBroker
    dead_letters: DeadLetterPolicy | None

    @classmethod
    def of(
        cls,
        name: str,
        settings: KitSettings,
        tracer_provider: TracerProvider | None = None,
        *,
        consumes: bool = True,
    ) -> ServiceKit:
        """The kit of service `name`; a service that `consumes` gets dead letters published by its broker."""
        provider = tracer_provider or make_tracer_provider(name, deployment=settings.deployment)
        dead_letters = DeadLetterPolicy() if consumes else None
        broker = make_broker(kafka=settings.kafka, client_id=name, tracer_provider=provider, dead_letters=dead_letters)
        return cls(name, settings, provider, broker, dead_letters)

    def consumers(self, subscriptions: Sequence[Subscription]) -> list[Consumer]:
        """The consumers of the service's declared subscriptions."""
        if self.dead_letters is None:
            raise ValueError(f"{self.name} was built as a service that consumes nothing")
        parts = ConsumerParts(self.settings.kafka, self.dead_letters, self.name, self.tracer_provider)
        return build_consumers(subscriptions, parts)

    def bus(self, topics: list[TopicSpec], consumers: list[Consumer] | None = None) -> BusConnection:
        """The connection to Kafka that creates `topics`, starts the broker, then the consumers."""
        return BusConnection(self.broker, kafka=self.settings.kafka, topics=topics, consumers=consumers)

    def app(self, *, title: str, description: str, routers: Sequence[APIRouter], **options: Any) -> FastAPI:
        """The service's app (`build_service_app`, whose other keyword arguments `options` are)."""
        return build_service_app(
            service=self.name,
            title=title,
            description=description,
            version=self.settings.deployment.service_version,
            http=self.settings.http,
            tracer_provider=self.tracer_provider,
            routers=routers,
            **options,
        )
