"""tracking's HTTP shapes: the bodies and answers of its routes, and the answer built from a projected request."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal, cast

from pydantic import BaseModel, Field

from shared.domain.jalali import to_jalali_datetime_text, to_jalali_text
from shared.domain.state_machine import RequestState

from .domain import Names, describe_notification
from .domain_audit import AccessShown, describe_access
from .domain_folding import status_change_id

if TYPE_CHECKING:  # the rows an answer is built from; only their attributes are read here
    from .store import NotificationRecord, RequestRecord, TimelineEntry

NotificationChannel = Literal["sms", "email"]
NotificationState = Literal["sent", "delivered", "failed"]


class LookupIn(BaseModel):
    """A status lookup: the tracking code together with the applicant's national ID, never the code alone."""

    tracking_code: str = Field(min_length=1, max_length=40, examples=["13160-00012-42902"])
    national_id: str = Field(min_length=1, max_length=20, examples=["0012345679"])


class TimelineOut(BaseModel):
    """One line of the timeline."""

    event_type: str
    occurred_at: datetime
    # The same moment on Tehran's wall clock in the Jalali calendar, as a citizen reads it: 1405/09/07 16:30.
    occurred_at_jalali: str = Field(examples=["1405/09/07 16:30"])
    applied: bool
    status_after: str | None
    detail_fa: str | None
    detail_en: str | None


class NotificationOut(BaseModel):
    """How telling the applicant about one status change on one channel went, as far as tracking knows."""

    # Which status change it told about: its StatusChanged id, the status it moved to and when it happened.
    status_event_id: str
    status: str
    status_changed_at: datetime | None
    channel: NotificationChannel
    state: NotificationState
    occurred_at: datetime
    occurred_at_jalali: str = Field(examples=["1405/09/07 16:31"])
    detail_fa: str
    detail_en: str


class DocumentOut(BaseModel):
    """A document of the request, by the hash of its content."""

    kind: str
    sha256: str
    media_type: str
    size_bytes: int


class DecisionOut(BaseModel):
    """The decision, its reasons and the law it rests on."""

    decision: str
    reason_fa: str | None
    reason_en: str | None
    legal_basis: str | None
    decided_at: datetime


class ResultOut(BaseModel):
    """What the agency delivered: a stored document or a link, with a summary."""

    document: DocumentOut | None
    url: str | None
    summary_fa: str
    summary_en: str
    delivered_at: datetime


class ComplaintOut(BaseModel):
    """The complaint waiting for the agency's answer."""

    complaint_id: str
    filed_at: datetime


class StatusOut(BaseModel):
    """What a citizen sees of a request."""

    tracking_code: str
    service_id: str
    catalog_version: int
    status: str
    sla_breached: bool
    complaint_open: bool
    waiting_for_fa: str | None
    waiting_for_en: str | None
    submitted_at: datetime
    submitted_at_jalali: str = Field(examples=["1405/09/07 16:30"])
    updated_at: datetime
    updated_at_jalali: str = Field(examples=["1405/09/07 16:31"])
    waiting_since: datetime | None
    # The SLA: due by the end of this day (Tehran), in working days; null while the clock waits on the citizen.
    duration_working_days: int | None
    due_on: date | None
    due_on_jalali: str | None = Field(examples=["1405/09/17"])
    overdue: bool
    documents: list[DocumentOut]
    decision: DecisionOut | None
    result: ResultOut | None
    open_complaint: ComplaintOut | None
    timeline: list[TimelineOut]
    # The SMS and emails about the request's status changes, in the order of the changes.
    notifications: list[NotificationOut] = []


class HistoryOut(BaseModel):
    """The citizen's requests, newest first (each one's timeline is in its own lookup)."""

    requests: list[StatusOut]


class AccessOut(BaseModel):
    """One access to the citizen's personal data: when, who (a staff member only by role and organisation), what
    and why."""

    # The access's place in the citizen's record of accesses (1 is the first ever).
    seq: int
    occurred_at: datetime
    occurred_at_jalali: str = Field(examples=["1405/09/07 16:30"])
    # citizen, operator, agency_staff, agency, service
    actor_kind: str = Field(examples=["agency"])
    # "self" for the citizen, an agency's or a service's id; null for a person on staff (masked).
    actor: str | None = Field(examples=["property-registry"])
    role: str = Field(examples=["reviewer"])
    # The agency's id, a service office's, or "desk".
    organisation: str = Field(examples=["property-registry"])
    # follow_up, review, verification, support, oversight
    purpose: str = Field(examples=["review"])
    # request, history, document, result, access_log, notifications
    resource_kind: str = Field(examples=["request"])
    # The tracking code read, or "history" / "access-log" for the lists.
    resource: str = Field(examples=["13160-00012-42902"])
    detail_fa: str
    detail_en: str


class AccessLogOut(BaseModel):
    """Who looked at the citizen's file, newest first; `next_before` asks for the next page (null: no more)."""

    accesses: list[AccessOut]
    next_before: int | None


def access_log_out(page: Sequence[AccessShown], next_before: int | None, names: Names) -> AccessLogOut:
    """The citizen's view of a page of their access records."""
    accesses = []
    for access in page:
        detail_fa, detail_en = describe_access(access, names)
        accesses.append(
            AccessOut(
                **{name: getattr(access, name) for name in _AS_SHOWN},
                occurred_at_jalali=to_jalali_datetime_text(access.occurred_at),
                detail_fa=detail_fa,
                detail_en=detail_en,
            )
        )
    return AccessLogOut(accesses=accesses, next_before=next_before)


_AS_SHOWN = (
    "seq",
    "occurred_at",
    "actor_kind",
    "actor",
    "role",
    "organisation",
    "purpose",
    "resource_kind",
    "resource",
)


class RequestFactsOut(BaseModel):
    """Where a request stands, without its applicant: what a command on it is checked against."""

    tracking_code: str
    service_id: str
    catalog_version: int
    agency: str
    status: RequestState
    sla_breached: bool
    complaint_open: bool
    open_complaint_id: str | None


def notifications_out(entries: Sequence[TimelineEntry], rows: Sequence[NotificationRecord]) -> list[NotificationOut]:
    """Each notification beside the status change it told about (found on the timeline), in the changes' order."""
    changes = {status_change_id(entry.event_id): (index, entry) for index, entry in enumerate(entries) if entry.applied}
    # A notification whose change is not on the timeline (none should be) goes last rather than nowhere.
    unknown = (len(entries), None)

    def place(row: NotificationRecord) -> tuple[int, str, str]:
        return changes.get(row.status_event_id, unknown)[0], row.occurred_at.isoformat(), row.channel

    shown = []
    for row in sorted(rows, key=place):
        detail_fa, detail_en = describe_notification(row.status, row.channel, row.state)
        change = changes.get(row.status_event_id, unknown)[1]
        shown.append(
            NotificationOut(
                status_event_id=row.status_event_id,
                status=row.status,
                status_changed_at=change.occurred_at if change else None,
                # The table holds only what a NotificationOutcome carried (validated when it arrived).
                channel=cast(NotificationChannel, row.channel),
                state=cast(NotificationState, row.state),
                occurred_at=row.occurred_at,
                occurred_at_jalali=to_jalali_datetime_text(row.occurred_at),
                detail_fa=detail_fa,
                detail_en=detail_en,
            )
        )
    return shown


# The answer's fields that are the projected row's own columns, as they are.
_AS_PROJECTED = (
    "tracking_code",
    "service_id",
    "catalog_version",
    "status",
    "sla_breached",
    "complaint_open",
    "waiting_for_fa",
    "waiting_for_en",
    "waiting_since",
    "submitted_at",
    "updated_at",
    "duration_working_days",
    "due_on",
)


def status_of(
    record: RequestRecord, entries: list[TimelineEntry], notifications: Sequence[NotificationRecord] = ()
) -> StatusOut:
    """The citizen's view of a projected request."""
    result = json.loads(record.result) if record.result else None
    return StatusOut(
        **{name: getattr(record, name) for name in _AS_PROJECTED},
        submitted_at_jalali=to_jalali_datetime_text(record.submitted_at),
        updated_at_jalali=to_jalali_datetime_text(record.updated_at),
        due_on_jalali=to_jalali_text(record.due_on) if record.due_on else None,
        overdue=record.sla_breached,
        documents=[DocumentOut.model_validate(item) for item in json.loads(record.documents)],
        decision=DecisionOut(
            decision=record.decision,
            reason_fa=record.decision_reason_fa,
            reason_en=record.decision_reason_en,
            legal_basis=record.legal_basis,
            decided_at=record.decided_at,
        )
        if record.decision and record.decided_at
        else None,
        result=ResultOut(
            document=DocumentOut.model_validate(result["document"]) if result["document"] else None,
            url=result["url"],
            summary_fa=result["summary_fa"],
            summary_en=result["summary_en"],
            delivered_at=record.delivered_at,
        )
        if result and record.delivered_at
        else None,
        open_complaint=ComplaintOut(complaint_id=record.open_complaint_id, filed_at=record.complaint_filed_at)
        if record.open_complaint_id and record.complaint_filed_at
        else None,
        timeline=[
            TimelineOut(
                event_type=entry.event_type,
                occurred_at=entry.occurred_at,
                occurred_at_jalali=to_jalali_datetime_text(entry.occurred_at),
                applied=entry.applied,
                status_after=entry.status_after,
                detail_fa=entry.detail_fa,
                detail_en=entry.detail_en,
            )
            for entry in entries
        ],
        notifications=notifications_out(entries, notifications),
    )
