"""intake's submission use case and the dependencies every intake use case shares (no FastAPI or Kafka types).

A submission is accepted only once Kafka acknowledged it (acks=all) by its `accept_by`; with an
Idempotency-Key, a retry of the same body gets the same tracking code and another body is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol, TypeVar

from shared.catalog import Catalog, ServiceDefinition
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.events import AcceptedEvent, AgencyCommand, CitizenCommand, RequestSubmitted, utcnow

from .adapters import RequestView
from .adapters_agency_keys import AgencyKeys
from .adapters_blobs import BlobStore, BlobStoreUnavailable
from .adapters_guards import (
    IdempotencyStore,
    IdempotencyUnavailable,
    InFlight,
    Mismatch,
    RateLimits,
    Replay,
    fingerprint,
)
from .domain import FieldsRefused, UnknownService, validate_submission
from .domain_commands import RequestFacts
from .schemas import SubmissionIn
from .service_documents import are_document_errors, validate_document_refs

log = logging.getLogger(__name__)

Command = CitizenCommand | AgencyCommand
E = TypeVar("E", bound=AcceptedEvent)


class Appended(Protocol):
    """What the bus's acknowledgement says of an appended event (aiokafka's RecordMetadata has these)."""

    @property
    def timestamp(self) -> int: ...

    @property
    def timestamp_type(self) -> int: ...


Publish = Callable[[RequestSubmitted], Awaitable[Appended]]
PublishCommand = Callable[[Command], Awaitable[Appended]]


class TrackingLookup(Protocol):
    """tracking's lookup (adapters.TrackingClient); raises adapters.TrackingUnavailable when it cannot answer."""

    async def lookup(self, *, tracking_code: str, national_id: str) -> RequestView | None: ...

    async def request_facts(self, tracking_code: str) -> RequestFacts | None: ...

    async def aclose(self) -> None: ...


@dataclass
class Intake:
    """What intake's use cases depend on: built once by the composition root (app.py), kept on `app.state.intake`."""

    catalog: Catalog
    generator: TrackingCodeGenerator
    publish_submission: Publish
    publish_command: PublishCommand
    is_connected: Callable[[], bool]
    accept_window_s: float
    grace_s: float
    idempotency: IdempotencyStore
    rate_limits: RateLimits
    blob_store: BlobStore
    tracking: TrackingLookup
    agency_keys: AgencyKeys
    # How long an agency refusal that tracking's projection may yet catch up with is read again, and how often.
    settle_s: float = 1.5
    settle_poll_s: float = 0.25

    async def aclose(self) -> None:
        """Release outbound connections."""
        await self.tracking.aclose()


class DocumentStoreUnavailable(RuntimeError):
    """The blob store did not answer, so the documents could not be checked: nothing was accepted."""


class BusUnavailable(RuntimeError):
    """Kafka did not acknowledge the event in time: nothing was accepted, the citizen may retry."""


class RateLimited(Exception):
    """Too many requests from this client or for this national ID; retry after `retry_after_s`."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"retry after {retry_after_s}s")
        self.retry_after_s = retry_after_s


class InvalidSubmission(FieldsRefused):
    """The submission's fields or documents do not fit its service."""


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used with another request body."""


class IdempotencyKeyInFlight(Exception):
    """The first attempt with this Idempotency-Key and body is still being recorded."""


@dataclass(frozen=True)
class Accepted:
    """A recorded submission, or the replay of one: what the citizen follows it with."""

    tracking_code: str
    service_id: str
    catalog_version: int


async def submit_once(
    *, intake: Intake, submission: SubmissionIn, client: str, idempotency_key: str | None, today: date
) -> Accepted:
    """Submit within the rate limits, once per Idempotency-Key: a retry of the same body replays its code.

    Raises RateLimited, BusUnavailable, InvalidIdempotencyKey, IdempotencyUnavailable, IdempotencyKeyReused,
    IdempotencyKeyInFlight, and whatever `submit_request` raises.
    """
    decision = await intake.rate_limits.hit(client=client, national_id=submission.applicant.national_id)
    if not decision.allowed:
        raise RateLimited(decision.retry_after_s)
    if not intake.is_connected():
        raise BusUnavailable("not connected")
    if idempotency_key is None:
        return await _submit(intake=intake, submission=submission, today=today)
    claim = fingerprint_of(submission)
    began = await intake.idempotency.begin(idempotency_key, claim)
    if isinstance(began, Replay):
        service = intake.catalog.get(submission.service_id)
        version = began.catalog_version or (service.version if service else 1)
        return Accepted(tracking_code=began.tracking_code, service_id=submission.service_id, catalog_version=version)
    if isinstance(began, Mismatch):
        raise IdempotencyKeyReused(idempotency_key)
    if isinstance(began, InFlight):
        raise IdempotencyKeyInFlight(idempotency_key)
    try:
        accepted = await _submit(intake=intake, submission=submission, today=today)
    except Exception:
        await _release(intake=intake, key=idempotency_key, claim=claim)
        raise
    try:
        await intake.idempotency.complete(
            idempotency_key, claim, accepted.tracking_code, catalog_version=accepted.catalog_version
        )
    except IdempotencyUnavailable:
        # The request was accepted all the same; its pending claim expires and a retry is refused meanwhile.
        log.warning("could not complete idempotency key for %s", accepted.tracking_code)
    return accepted


def fingerprint_of(submission: SubmissionIn) -> str:
    """The claim an Idempotency-Key holds: the fingerprint of the submission's body."""
    return fingerprint(submission.model_dump(mode="json"))


async def _submit(*, intake: Intake, submission: SubmissionIn, today: date) -> Accepted:
    event = await submit_request(intake=intake, submission=submission, today=today)
    return Accepted(
        tracking_code=event.tracking_code, service_id=event.service_id, catalog_version=event.catalog_version
    )


async def _release(*, intake: Intake, key: str, claim: str) -> None:
    """Free a failed attempt's claim so the citizen can retry with the same key (it also expires by itself)."""
    try:
        await intake.idempotency.abandon(key, claim)
    except IdempotencyUnavailable:
        log.warning("could not release an idempotency key; it expires by itself")


async def submit_request(*, intake: Intake, submission: SubmissionIn, today: date) -> RequestSubmitted:
    """Validate a submission against its service, number it, and record it on the bus (acks=all).

    Returns the recorded event. Raises InvalidSubmission with the fields at fault (documents included: each
    must have been uploaded to the blob store and be of a kind and format the service accepts), UnknownService,
    DocumentStoreUnavailable, or BusUnavailable when Kafka did not append the event by its `accept_by` (the
    idempotent producer may still deliver it later; every consumer then sees it was appended too late and
    ignores it, as `RequestSubmitted.counts` says).
    """
    service: ServiceDefinition | None = intake.catalog.get(submission.service_id)
    if service is None:
        raise UnknownService(submission.service_id)
    # The applicant's fields, as typed, are validate_submission's arguments of the same names.
    checked = validate_submission(
        service=service, fields=submission.fields, today=today, **submission.applicant.model_dump()
    )
    try:
        documents = await validate_document_refs(
            service=service, documents=submission.documents, store=intake.blob_store
        )
    except BlobStoreUnavailable as error:
        raise DocumentStoreUnavailable(type(error).__name__) from error
    errors = checked if isinstance(checked, list) else []
    if are_document_errors(documents):
        raise InvalidSubmission(errors + documents)
    if isinstance(checked, list):
        raise InvalidSubmission(checked)
    event = RequestSubmitted(
        tracking_code=intake.generator.next_code(),
        service_id=service.id,
        catalog_version=service.version,
        agency=service.agency,
        applicant=checked.applicant,
        fields=checked.fields,
        documents=documents,
        accept_by=accept_by(intake),
    )
    await record_in_time(intake=intake, publish=intake.publish_submission, event=event)
    return event


def accept_by(intake: Intake) -> datetime:
    """When an event published now stops counting unless Kafka has appended it: the accept window from now."""
    return utcnow() + timedelta(seconds=intake.accept_window_s)


async def record_in_time(*, intake: Intake, publish: Callable[[E], Awaitable[Appended]], event: E) -> None:
    """Publish with acks=all; BusUnavailable unless Kafka appended the event by its `accept_by`."""
    try:
        # Past accept_by an ack can no longer make the event count; the grace covers an ack in flight.
        async with asyncio.timeout(intake.accept_window_s + intake.grace_s):
            metadata = await publish(event)
    except Exception as error:  # any failure to get Kafka's acknowledgement means "not accepted"
        raise BusUnavailable(type(error).__name__) from error
    if not event.counts(timestamp_ms=metadata.timestamp, timestamp_type=metadata.timestamp_type):
        raise BusUnavailable("appended after accept_by")
