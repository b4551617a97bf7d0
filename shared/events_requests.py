"""The events of the `desk.requests` topic, one class per event type.

A request's submission, inquiries and verification, the citizen's and the agency's commands, and SLA breaches.
shared/events.py re-exports them; import from there.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from shared.events_base import (
    LOG_APPEND_TIME_TYPE,
    Applicant,
    DocumentRef,
    EventBase,
    derived_event_id,
)


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
