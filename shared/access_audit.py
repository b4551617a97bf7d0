"""Every read of a citizen's personal data is recorded on `desk.access` before the data leaves: fail closed, bounded.

`AccessRecorder` publishes an `AccessRecorded` with acks=all (the broker from `shared.kafka.make_broker`) and
waits for Kafka's acknowledgement at most `KHEDMAT_AUDIT_TIMEOUT_S` (2 s); when it cannot, it raises
`AccessNotRecorded` and the route answers 503 with Retry-After, without the data. A route says what it returns
once, with the `personal_data(resource_kind, purpose)` dependency: the route (or a dependency of it) records
through the `AccessLog` it is handed, exactly once per successful read; a route that returns without recording
answers 500 instead of its data (the check runs before the response is sent). `install_personal_data` (called by
the service kit) marks each such route in OpenAPI (`x-personal-data`), documents its 503, and answers
`AccessNotRecorded`.

A record whose acknowledgement did not come in time may still be appended later (the idempotent producer never
drops a batch): the desk may hold a record of a read it refused, never a read without a record.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Histogram
from starlette.routing import BaseRoute

from shared.domain.identity import normalize_national_id
from shared.events import AccessRecorded, ActorKind, Purpose, ResourceKind
from shared.http import PROBLEM_CONTENT_TYPE, problem_response
from shared.kafka import publish_event
from shared.problems import unavailable
from shared.settings import AuditSettings
from shared.topics import Topic

log = logging.getLogger(__name__)

OPENAPI_MARKER: Final = "x-personal-data"

ACCESS_RECORDS = Counter(
    "khedmat_access_records_total",
    "Reads of personal data recorded on desk.access, or refused because their record could not be written",
    ["service", "resource_kind", "outcome"],
)
ACCESS_RECORD_SECONDS = Histogram(
    "khedmat_access_record_seconds",
    "Time to have one access record acknowledged by Kafka (what every read of personal data waits)",
    ["service"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)

NOT_RECORDED = unavailable(
    "access-not-recorded",
    "This cannot be shown right now",
    "این اطلاعات در این لحظه نمایش داده نمی‌شود",
    detail_en=(
        "Every access to personal data is recorded first, and the record could not be written; nothing was shown. "
        "Please try again in a few seconds."
    ),
    detail_fa=(
        "هر دسترسی به اطلاعات شخصی پیش از نمایش ثبت می‌شود و این بار ثبت ممکن نشد؛ چیزی نمایش داده نشد. "
        "لطفاً چند ثانیهٔ دیگر دوباره تلاش کنید."
    ),
    retry_after_s=5,
)


class AccessNotRecorded(Exception):
    """Kafka did not acknowledge the access record in time: the read must not happen."""


class UnrecordedRead(RuntimeError):
    """A route declared as returning personal data returned without recording exactly one access."""


def subject_digest(national_id: str, key: bytes) -> str:
    """The citizen's subject: HMAC-SHA256 (hex) of the canonical national ID, the same for every typed form."""
    return hmac.new(key, normalize_national_id(national_id).encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who reads: kind, id ("self", a staff id, an agency or service name), organisation and role."""

    kind: ActorKind
    id: str
    organisation: str = "desk"
    role: str = "citizen"


CITIZEN_SELF: Final = Actor(ActorKind.CITIZEN, "self")


def service_actor(name: str) -> Actor:
    """A service of the desk (or whoever holds its internal key) reading on the desk's behalf."""
    return Actor(ActorKind.SERVICE, name, "desk", "service")


class AccessRecorder:
    """Publishes access records and waits for Kafka's acknowledgement, at most `timeout_s`."""

    def __init__(
        self,
        *,
        publish: Callable[[AccessRecorded], Awaitable[object]],
        subject_key: bytes,
        timeout_s: float,
        service: str,
    ) -> None:
        self._publish = publish
        self._key = subject_key
        self.timeout_s = timeout_s
        self.service = service
        self._seconds = ACCESS_RECORD_SECONDS.labels(service)

    @classmethod
    def on_broker(cls, broker: KafkaBroker, *, settings: AuditSettings, service: str) -> AccessRecorder:
        """A recorder publishing through a service's broker (acks=all, idempotent) to `desk.access`."""

        async def publish(event: AccessRecorded) -> object:
            return await publish_event(broker, event, topic=Topic.ACCESS, source=f"/khedmat/{service}")

        return cls(
            publish=publish,
            subject_key=settings.subject_key.get_secret_value().encode(),
            timeout_s=settings.timeout_s,
            service=service,
        )

    def subject_of(self, national_id: str) -> str:
        """The subject digest of a national ID (raises InvalidNationalId for one that is not)."""
        return subject_digest(national_id, self._key)

    async def record(self, event: AccessRecorded) -> None:
        """Return once Kafka acknowledged the record; raise AccessNotRecorded past the bound or on any failure."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._publish(event)
        except Exception as error:  # down, slow, not connected yet, refused: the read is refused alike
            ACCESS_RECORDS.labels(self.service, event.resource_kind.value, "refused").inc()
            log.warning("access not recorded within %.1fs: %s", self.timeout_s, type(error).__name__)
            raise AccessNotRecorded(type(error).__name__) from error
        self._seconds.observe(time.perf_counter() - started)
        ACCESS_RECORDS.labels(self.service, event.resource_kind.value, "recorded").inc()


_NOT_IN_IDENTIFIERS = re.compile(r"[^A-Za-z0-9_.:/@-]")


def client_of(request: Request) -> str:
    """The caller's address as this service saw it (behind a trusted proxy, the forwarded one), fit for a record."""
    host = request.client.host if request.client and request.client.host else "unknown"
    return _NOT_IN_IDENTIFIERS.sub("_", host)[:64]


class AccessLog:
    """One route call's record of the personal data it returns: `record` once, before the data is answered."""

    def __init__(self, recorder: AccessRecorder, declared: PersonalData, *, client: str) -> None:
        self.recorder = recorder
        self.declared = declared
        self.client = client
        self.recorded = 0

    def subject_of(self, national_id: str) -> str:
        return self.recorder.subject_of(national_id)

    async def record(
        self, *, resource: str, national_id: str | None = None, subject: str | None = None, actor: Actor | None = None
    ) -> None:
        """Record this read of the citizen's data (by national ID or subject digest); AccessNotRecorded if it
        cannot be, and then the data must not be answered."""
        if self.recorded:
            raise UnrecordedRead("one read is one access record; this route recorded twice")
        if (national_id is None) == (subject is None):
            raise TypeError("name the citizen by exactly one of national_id and subject")
        who = actor or self.declared.actor
        event = AccessRecorded(
            subject=subject if subject is not None else self.subject_of(str(national_id)),
            actor_kind=who.kind,
            actor=who.id,
            organisation=who.organisation,
            role=who.role,
            resource_kind=self.declared.resource_kind,
            resource=resource,
            purpose=self.declared.purpose,
            client=self.client,
        )
        await self.recorder.record(event)
        self.recorded += 1


@dataclass(frozen=True)
class PersonalData:
    """The dependency behind `personal_data`: what a route returns and why; hands the route its `AccessLog`."""

    resource_kind: ResourceKind
    purpose: Purpose
    actor: Actor = CITIZEN_SELF

    def marker(self) -> dict[str, str]:
        """What the OpenAPI document says of the route (`x-personal-data`)."""
        return {
            "resource_kind": self.resource_kind.value,
            "purpose": self.purpose.value,
            "actor_kind": self.actor.kind.value,
            "audit": "one AccessRecorded on desk.access per successful call, acknowledged before the answer; "
            "503 when it cannot be recorded within KHEDMAT_AUDIT_TIMEOUT_S",
        }

    async def __call__(self, request: Request) -> AsyncIterator[AccessLog]:
        recorder = getattr(request.app.state, "access_recorder", None)
        if not isinstance(recorder, AccessRecorder):
            raise RuntimeError("a route returning personal data needs app.state.access_recorder")
        access = AccessLog(recorder, self, client=client_of(request))
        yield access
        # Reached only when the route returned (an error skips it), and before its answer is sent.
        if access.recorded != 1:
            raise UnrecordedRead(f"{request.scope.get('route')} returned personal data without recording it")


def personal_data(resource_kind: ResourceKind, purpose: Purpose, actor: Actor = CITIZEN_SELF) -> Any:
    """Declare that a route returns personal data: `access: Annotated[AccessLog, personal_data(...)]`.

    scope="function": the check that the route recorded runs before the answer is sent.
    """
    return Depends(PersonalData(resource_kind, purpose, actor), scope="function")


def _declarations(dependant: Dependant) -> Iterator[PersonalData]:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, PersonalData):
            yield dependency.call
        yield from _declarations(dependency)


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route, included routers' too (FastAPI 0.16x keeps an included router whole, behind a wrapper that
    names it `original_router`; older versions copied its routes into the app)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


def declared_personal_data(route: APIRoute) -> PersonalData | None:
    """The route's personal-data declaration (anywhere among its dependencies), if it has one."""
    found = {declared for declared in _declarations(route.dependant)}
    if len(found) > 1:
        raise ValueError(f"{route.path} declares personal data twice: {sorted(map(repr, found))}")
    return next(iter(found), None)


_NOT_RECORDED_RESPONSE: Final = {
    "description": "The access could not be recorded in time: nothing is shown (retry after Retry-After)",
    "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    "headers": {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}},
}


def install_personal_data(app: FastAPI) -> None:
    """Answer AccessNotRecorded with 503, and mark every route declaring personal data in the OpenAPI document."""

    async def refuse(request: Request, exc: Exception) -> JSONResponse:
        problem = NOT_RECORDED.error()
        return problem_response(problem.to_problem(request.url.path), problem.headers)

    app.add_exception_handler(AccessNotRecorded, refuse)
    for route in api_routes(app.routes):
        declared = declared_personal_data(route)
        if declared is None:
            continue
        route.openapi_extra = {**(route.openapi_extra or {}), OPENAPI_MARKER: declared.marker()}
        route.responses.setdefault(503, dict(_NOT_RECORDED_RESPONSE))
