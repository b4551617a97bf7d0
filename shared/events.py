"""Every event on the bus, defined once: frozen pydantic models with an `event_type` and a `schema_version`.

Request lifecycle events travel on `desk.requests`, keyed by tracking code; StatusChanged on `desk.status`;
ReviewRequested on each agency's own `agency.<agency>.inbox`. A consumer parses with `parse_request_event`,
`parse_status_event` or `parse_inbox_event`, which accept every schema version a topic has ever carried (older
versions are upcast here, once, for everyone).
"""

from __future__ import annotations

import json
import typing
import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, TypeAdapter, model_validator

from shared.domain.state_machine import RequestState

# Kafka's timestamp type for "stamped by the broker when appended" (0 is the producer's create time).
LOG_APPEND_TIME_TYPE = 1

# Deterministic ids for derived events: uuid5 in this namespace over (cause id, kind, discriminator).
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2e0a-5d1b-4c4e-9a51-3b8f1f0f6a11")


def new_event_id() -> str:
    """A fresh id for an event that is not derived from another (a citizen's or an agency's command)."""
    return str(uuid.uuid4())


def derived_event_id(cause_event_id: str, kind: str, discriminator: str = "") -> str:
    """The id of an event derived from another: the same cause always gives the same id, so duplicates drop."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{cause_event_id}|{kind}|{discriminator}"))


def utcnow() -> datetime:
    """Now, timezone-aware in UTC (every event time is)."""
    return datetime.now(UTC)


class Language(StrEnum):
    """Languages a citizen may read notifications in."""

    FA = "fa"
    EN = "en"


class EventBase(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: str = Field(default_factory=new_event_id)
    tracking_code: str = Field(min_length=15, max_length=15, pattern=r"^[0-9]{15}$")
    occurred_at: datetime = Field(default_factory=utcnow)


class Applicant(BaseModel):
    """Who asked; personal data, so it stays on internal topics and never in keys, spans or logs."""

    model_config = ConfigDict(frozen=True)

    national_id: str = Field(pattern=r"^[0-9]{10}$")
    mobile: str = Field(pattern=r"^09[0-9]{9}$")
    email: EmailStr | None = None
    birth_date: date
    language: Language = Language.FA
    # The channels the citizen asked to be told on; None: SMS, and email when an address was given.
    notification_channels: tuple[Literal["sms", "email"], ...] | None = Field(default=None, min_length=1, max_length=2)

    @model_validator(mode="after")
    def _channels_reachable(self) -> Applicant:
        channels = self.notification_channels
        if channels is not None and len(set(channels)) != len(channels):
            raise ValueError("a notification channel is named twice")
        if channels is not None and "email" in channels and self.email is None:
            raise ValueError("email notifications need an email address")
        return self


class DocumentRef(BaseModel):
    """An uploaded document, by the sha256 of its content (the blob store is content-addressed)."""

    model_config = ConfigDict(frozen=True)

    kind: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    media_type: str
    size_bytes: int = Field(ge=0)


class AcceptedEvent(EventBase):
    """An event intake accepts for a citizen or an agency: it counts only if Kafka appended it by `accept_by`."""

    # intake answers 503 past this time; the idempotent producer may still deliver the record later, and a
    # consumer that sees it was appended after `accept_by` must treat it as never sent.
    accept_by: datetime

    def counts(self, *, timestamp_ms: int, timestamp_type: int) -> bool:
        """Whether Kafka appended this event (LogAppendTime) no later than `accept_by`.

        intake and every consumer decide with the same two numbers, so a batch the idempotent producer
        delivered after intake had answered 503 is void everywhere. Records without a broker append time
        (in-memory test brokers) count.
        """
        if timestamp_type != LOG_APPEND_TIME_TYPE:
            return True
        return timestamp_ms <= int(self.accept_by.timestamp() * 1000)


class RequestSubmitted(AcceptedEvent):
    """A citizen's request, accepted by intake once Kafka acknowledged it."""

    event_type: Literal["RequestSubmitted"] = "RequestSubmitted"
    schema_version: Literal[1] = 1
    service_id: str
    catalog_version: int = Field(ge=1)
    agency: str
    applicant: Applicant
    fields: dict[str, str] = Field(default_factory=dict)
    documents: list[DocumentRef] = Field(default_factory=list)


class InquiryOutcome(StrEnum):
    """How one inquiry at an agency ended."""

    PASSED = "passed"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"


class InquiryCompleted(EventBase):
    """One inquiry at one agency finished (passed, failed with a reason, or unavailable after retries)."""

    event_type: Literal["InquiryCompleted"] = "InquiryCompleted"
    schema_version: Literal[1] = 1
    caused_by: str
    inquiry: str
    agency: str
    outcome: InquiryOutcome
    reason_fa: str | None = None
    reason_en: str | None = None
    attempts: int = Field(default=1, ge=1)


class NextStep(StrEnum):
    """What verification decided should happen next."""

    APPROVE = "approve"
    AGENCY_REVIEW = "agency_review"
    NEEDS_CORRECTION = "needs_correction"
    REJECT = "reject"


class VerificationCompleted(EventBase):
    """All inquiries for one submission or correction are done; says what happens next."""

    event_type: Literal["VerificationCompleted"] = "VerificationCompleted"
    schema_version: Literal[1] = 1
    caused_by: str
    next_step: NextStep
    inquiries: dict[str, InquiryOutcome] = Field(default_factory=dict)
    reason_fa: str | None = None
    reason_en: str | None = None


class CommandEvent(AcceptedEvent):
    """A citizen's or an agency's command on an existing request, under the same `accept_by` rule."""


class CorrectionSubmitted(CommandEvent):
    """The citizen corrected what verification or the agency asked for; the request is verified again."""

    event_type: Literal["CorrectionSubmitted"] = "CorrectionSubmitted"
    schema_version: Literal[1] = 1
    fields: dict[str, str] = Field(default_factory=dict)
    documents: list[DocumentRef] = Field(default_factory=list)
    note: str | None = Field(default=None, max_length=2000)


class RequestCancelled(CommandEvent):
    """The citizen withdrew the request before it was decided."""

    event_type: Literal["RequestCancelled"] = "RequestCancelled"
    schema_version: Literal[1] = 1
    by: Literal["citizen"] = "citizen"
    # The citizen's own words, in the field of the script they wrote in; never copied to desk.status.
    reason_fa: str | None = Field(default=None, max_length=500)
    reason_en: str | None = Field(default=None, max_length=500)


class ComplaintFiled(CommandEvent):
    """The citizen complained about a decision, or about a request left past its deadline."""

    event_type: Literal["ComplaintFiled"] = "ComplaintFiled"
    schema_version: Literal[1] = 1
    complaint_id: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=2000)


class Decision(StrEnum):
    """What an agency decided about a request under its review."""

    APPROVE = "approve"
    REJECT = "reject"
    NEEDS_CORRECTION = "needs_correction"


class RequestDecided(CommandEvent):
    """The request's agency decided it; tracking refuses a decision from any other agency or for another service."""

    event_type: Literal["RequestDecided"] = "RequestDecided"
    schema_version: Literal[1] = 1
    agency: str
    service_id: str
    decision: Decision
    reason_fa: str | None = Field(default=None, max_length=2000)
    reason_en: str | None = Field(default=None, max_length=2000)
    legal_basis: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _reasons_when_not_approved(self) -> RequestDecided:
        # A citizen is owed the reason, and for a rejection the law it rests on, in words they can act on.
        if self.decision is Decision.REJECT and not (self.legal_basis and self.legal_basis.strip()):
            raise ValueError("a rejection needs its legal_basis")
        if self.decision is not Decision.APPROVE and not (self.reason_fa and self.reason_en):
            raise ValueError(f"a {self.decision.value} decision needs reason_fa and reason_en")
        return self


class ResultDelivered(CommandEvent):
    """The request's agency delivered the result: a stored document or a link, with a summary."""

    event_type: Literal["ResultDelivered"] = "ResultDelivered"
    schema_version: Literal[1] = 1
    agency: str
    service_id: str
    result: DocumentRef | None = None
    result_url: str | None = Field(default=None, max_length=2000)
    summary_fa: str = Field(min_length=1, max_length=1000)
    summary_en: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_result(self) -> ResultDelivered:
        if (self.result is None) == (self.result_url is None):
            raise ValueError("a result is either a document or a result_url, exactly one")
        return self


class ComplaintResolved(CommandEvent):
    """The request's agency answered the open complaint."""

    event_type: Literal["ComplaintResolved"] = "ComplaintResolved"
    schema_version: Literal[1] = 1
    agency: str
    service_id: str
    complaint_id: str = Field(min_length=1, max_length=64)
    resolution_fa: str = Field(min_length=1, max_length=2000)
    resolution_en: str = Field(min_length=1, max_length=2000)


class SlaBreached(EventBase):
    """tracking's SLA watcher found the request past its due date (working days, pauses excluded).

    Its id is derived from the tracking code and the due date, so every replica and every restart of the
    watcher publishes the same event and the projection applies it once.
    """

    event_type: Literal["SlaBreached"] = "SlaBreached"
    schema_version: Literal[1] = 1
    due_on: date
    duration_working_days: int = Field(ge=1)


def sla_breach_event_id(tracking_code: str, due_on: date) -> str:
    """The one id of a request's breach of one due date."""
    return derived_event_id(tracking_code, "SlaBreached", due_on.isoformat())


AgencyCommand = RequestDecided | ResultDelivered | ComplaintResolved
"""Commands only the request's own agency may give."""

CitizenCommand = CorrectionSubmitted | RequestCancelled | ComplaintFiled
"""Commands only the applicant may give (ownership proven with the national ID at intake)."""


RequestEvent = Annotated[
    RequestSubmitted
    | InquiryCompleted
    | VerificationCompleted
    | CorrectionSubmitted
    | RequestCancelled
    | ComplaintFiled
    | RequestDecided
    | ResultDelivered
    | ComplaintResolved
    | SlaBreached,
    Field(discriminator="event_type"),
]
"""Any event of the `desk.requests` topic."""


class StatusChanged(EventBase):
    """A request moved from one state to another; derived by tracking, carries no personal data."""

    event_type: Literal["StatusChanged"] = "StatusChanged"
    schema_version: Literal[1] = 1
    caused_by: str
    caused_by_type: str
    service_id: str
    agency: str
    previous_status: RequestState | None
    status: RequestState
    reason_fa: str | None = None
    reason_en: str | None = None


StatusEvent = Annotated[StatusChanged, Field(discriminator="event_type")]


class NotificationOutcome(EventBase):
    """On `desk.notifications`: how telling the applicant about one status change on one channel ended.

    No contact details: the channel and the state only. Its id is derived from the status change, the channel
    and the state, so a republished outcome is dropped by a consumer that has seen it.
    """

    event_type: Literal["NotificationOutcome"] = "NotificationOutcome"
    schema_version: Literal[1] = 1
    status_event_id: str
    status: RequestState
    channel: Literal["sms", "email"]
    state: Literal["sent", "delivered", "failed"]


def notification_outcome_id(status_event_id: str, channel: str, state: str) -> str:
    """The one id of one outcome of one notification."""
    return derived_event_id(status_event_id, "NotificationOutcome", f"{channel}:{state}")


class ReviewApplicant(BaseModel):
    """The applicant as the reviewing agency sees them: only what its service's review names, never contacts."""

    model_config = ConfigDict(frozen=True)

    national_id: str | None = Field(default=None, pattern=r"^[0-9]{10}$")
    birth_date: date | None = None


class ReviewRequested(EventBase):
    """On `agency.<agency>.inbox`: a verified request this agency's officers must decide.

    Carries only what the service's `review` section shares (data minimisation: the agency's ACL covers its
    inbox, not `desk.requests`); the officer answers through intake's agency decision endpoint.
    """

    event_type: Literal["ReviewRequested"] = "ReviewRequested"
    schema_version: Literal[1] = 1
    caused_by: str
    service_id: str
    catalog_version: int = Field(ge=1)
    agency: str
    applicant: ReviewApplicant
    fields: dict[str, str] = Field(default_factory=dict)
    documents: list[DocumentRef] = Field(default_factory=list)
    inquiries: dict[str, InquiryOutcome] = Field(default_factory=dict)
    reason_fa: str | None = None
    reason_en: str | None = None


InboxEvent = Annotated[ReviewRequested, Field(discriminator="event_type")]

_request_event_adapter: TypeAdapter[RequestEvent] = TypeAdapter(RequestEvent)
_status_event_adapter: TypeAdapter[StatusChanged] = TypeAdapter(StatusChanged)
_inbox_event_adapter: TypeAdapter[ReviewRequested] = TypeAdapter(ReviewRequested)


REQUEST_EVENT_TYPES = frozenset(
    event.model_fields["event_type"].default for event in typing.get_args(typing.get_args(RequestEvent)[0])
)
"""The `desk.requests` event types this build understands; newer ones are skipped, not dead-lettered."""


def is_known_request_event(payload: dict[str, Any]) -> bool:
    """Whether this build knows the event's type (forward compatibility: producers may be newer)."""
    return payload.get("event_type") in REQUEST_EVENT_TYPES


def upcast(payload: dict[str, Any]) -> dict[str, Any]:
    """Bring an older schema version of an event up to the current one (none are older than v1 yet)."""
    return payload


def _payload(raw: bytes | bytearray | dict[str, Any]) -> dict[str, Any]:
    payload = json.loads(raw) if isinstance(raw, bytes | bytearray) else raw
    if not isinstance(payload, dict):
        raise ValueError("an event is a JSON object")
    return upcast(payload)


def parse_request_event(payload: bytes | dict[str, Any]) -> RequestEvent:
    """Parse one `desk.requests` event of any supported version (raw bytes are upcast like dicts)."""
    return _request_event_adapter.validate_python(_payload(payload))


def parse_status_event(payload: bytes | dict[str, Any]) -> StatusChanged:
    """Parse one `desk.status` event of any supported version (raw bytes are upcast like dicts)."""
    return _status_event_adapter.validate_python(_payload(payload))


def parse_inbox_event(payload: bytes | dict[str, Any]) -> ReviewRequested:
    """Parse one `agency.<agency>.inbox` event of any supported version."""
    return _inbox_event_adapter.validate_python(_payload(payload))


AnyEvent = (
    RequestSubmitted
    | InquiryCompleted
    | VerificationCompleted
    | CorrectionSubmitted
    | RequestCancelled
    | ComplaintFiled
    | RequestDecided
    | ResultDelivered
    | ComplaintResolved
    | SlaBreached
    | StatusChanged
    | ReviewRequested
    | NotificationOutcome
)
