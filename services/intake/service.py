"""intake's use cases: plain async functions, no FastAPI or faststream imports."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import TypeVar

from aiokafka.structs import RecordMetadata

from shared.catalog import Catalog, ServiceDefinition
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.events import AcceptedEvent, RequestSubmitted, utcnow

from .documents import BlobStore, BlobStoreUnavailable, are_document_errors, validate_document_refs
from .domain import FieldError, validate_submission
from .models import SubmissionIn

Publish = Callable[[RequestSubmitted], Awaitable[RecordMetadata]]
E = TypeVar("E", bound=AcceptedEvent)


class UnknownService(LookupError):
    """No service in the catalog has this id."""


class DocumentStoreUnavailable(RuntimeError):
    """The blob store did not answer, so the documents could not be checked: nothing was accepted."""


class BusUnavailable(RuntimeError):
    """Kafka did not acknowledge the event in time: nothing was accepted, the citizen may retry."""


async def submit_request(
    *,
    catalog: Catalog,
    generator: TrackingCodeGenerator,
    publish: Publish,
    submission: SubmissionIn,
    store: BlobStore,
    today: date,
    accept_window_s: float,
    grace_s: float,
) -> RequestSubmitted | list[FieldError]:
    """Validate a submission against its service, number it, and record it on the bus (acks=all).

    Returns the recorded event, or the fields at fault (documents included: each must have been uploaded to
    the blob store and be of a kind and format the service accepts). Raises UnknownService,
    DocumentStoreUnavailable, or BusUnavailable when Kafka
    did not append the event by its `accept_by` (the idempotent producer may still deliver it later; every
    consumer then sees it was appended too late and ignores it, as `RequestSubmitted.counts` says).
    """
    service: ServiceDefinition | None = catalog.get(submission.service_id)
    if service is None:
        raise UnknownService(submission.service_id)
    applicant = submission.applicant
    checked = validate_submission(
        service=service,
        national_id=applicant.national_id,
        mobile=applicant.mobile,
        email=applicant.email,
        birth_date=applicant.birth_date,
        language=applicant.language,
        notification_channels=applicant.notification_channels,
        fields=submission.fields,
        today=today,
    )
    try:
        documents = await validate_document_refs(service=service, documents=submission.documents, store=store)
    except BlobStoreUnavailable as error:
        raise DocumentStoreUnavailable(type(error).__name__) from error
    errors = checked if isinstance(checked, list) else []
    if are_document_errors(documents):
        return errors + documents
    if isinstance(checked, list):
        return checked
    event = RequestSubmitted(
        tracking_code=generator.next_code(),
        service_id=service.id,
        catalog_version=service.version,
        agency=service.agency,
        applicant=checked.applicant,
        fields=checked.fields,
        documents=documents,
        accept_by=utcnow() + timedelta(seconds=accept_window_s),
    )
    await record_in_time(publish, event, accept_window_s=accept_window_s, grace_s=grace_s)
    return event


async def record_in_time(
    publish: Callable[[E], Awaitable[RecordMetadata]], event: E, *, accept_window_s: float, grace_s: float
) -> None:
    """Publish with acks=all; BusUnavailable unless Kafka appended the event by its `accept_by`."""
    try:
        # Past accept_by an ack can no longer make the event count; the grace covers an ack in flight.
        async with asyncio.timeout(accept_window_s + grace_s):
            metadata = await publish(event)
    except Exception as error:  # any failure to get Kafka's acknowledgement means "not accepted"
        raise BusUnavailable(type(error).__name__) from error
    if not event.counts(timestamp_ms=metadata.timestamp, timestamp_type=metadata.timestamp_type):
        raise BusUnavailable("appended after accept_by")
