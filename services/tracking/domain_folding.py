"""Fold one event into one request's projected row: pure (no I/O), shared by the live fold and the rebuild.

The caller loads the request's row (or None) and the next timeline number, calls `fold`, and writes what
comes back; the same events in the same order give the same rows in every run, which is what makes a
rebuilt projection equal to the live one, row by row.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import date, datetime

from shared.domain.state_machine import WAITING_ON_CITIZEN, Applied, Flags, RequestState, apply
from shared.domain.working_days import WorkingCalendar, tehran_day
from shared.events import (
    ComplaintFiled,
    ComplaintResolved,
    CorrectionSubmitted,
    DocumentRef,
    InquiryCompleted,
    NextStep,
    RequestDecided,
    RequestEvent,
    RequestSubmitted,
    ResultDelivered,
    StatusChanged,
    VerificationCompleted,
    derived_event_id,
)

from .domain import (
    NO_NAMES,
    Description,
    Names,
    NotAuthorised,
    check_authority,
    check_complaint,
    describe,
    status_reason,
    trigger_for,
)
from .domain_terms import ServiceTerms, TermsOf


@dataclass(slots=True)
class ProjectedRequest:
    """A request's row while it is folded: plain data with the columns of `request_status` (store.RequestRecord).

    Not the SQLModel class itself: instrumented ORM objects cost more to build and change than the whole fold.
    """

    tracking_code: str
    national_id_digest: str
    service_id: str
    catalog_version: int
    agency: str
    status: str
    submitted_at: datetime
    updated_at: datetime
    sla_breached: bool = False
    complaint_open: bool = False
    waiting_for_fa: str | None = None
    waiting_for_en: str | None = None
    waiting_since: datetime | None = None
    pending_inquiries: str = ""
    duration_working_days: int | None = None
    due_on: date | None = None
    paused_since: datetime | None = None
    paused_working_days: int = 0
    documents: str = "[]"
    decision: str | None = None
    decision_reason_fa: str | None = None
    decision_reason_en: str | None = None
    legal_basis: str | None = None
    decided_at: datetime | None = None
    result: str | None = None
    delivered_at: datetime | None = None
    open_complaint_id: str | None = None
    complaint_filed_at: datetime | None = None


@dataclass(slots=True, frozen=True)
class TimelineLine:
    """One timeline row (the columns of `timeline_entry`)."""

    tracking_code: str
    seq: int
    event_id: str
    event_type: str
    occurred_at: datetime
    applied: bool
    status_after: str | None = None
    detail_fa: str | None = None
    detail_en: str | None = None


REQUEST_FIELDS = tuple(item.name for item in fields(ProjectedRequest))
TIMELINE_FIELDS = tuple(item.name for item in fields(TimelineLine))


@dataclass(frozen=True)
class Folded:
    """What one event did: the request's row afterwards (None: still no request), its timeline line, its change."""

    record: ProjectedRequest | None
    entry: TimelineLine
    change: StatusChanged | None


def status_change_id(cause_event_id: str) -> str:
    """The id of the StatusChanged an applied event causes (what notify's outcomes refer to)."""
    return derived_event_id(cause_event_id, "StatusChanged")


def refused_entry(event: RequestEvent, seq: int, reason_fa: str, reason_en: str) -> TimelineLine:
    """The timeline entry of an event that was refused: recorded with its reason, never applied."""
    return _entry(event, seq, None, f"رویداد پذیرفته نشد: {reason_fa}", f"Event refused: {reason_en}")


def _entry(
    event: RequestEvent, seq: int, state: RequestState | None, detail_fa: str | None, detail_en: str | None
) -> TimelineLine:
    """The timeline entry of an event: applied when it moved the request to `state`, refused without one."""
    return TimelineLine(
        tracking_code=event.tracking_code,
        seq=seq,
        event_id=event.event_id,
        event_type=event.event_type,
        occurred_at=event.occurred_at,
        applied=state is not None,
        status_after=None if state is None else state.value,
        detail_fa=detail_fa,
        detail_en=detail_en,
    )


def _pending(record: ProjectedRequest) -> list[str]:
    return record.pending_inquiries.split() if record.pending_inquiries else []


def _waiting_for_inquiries(
    pending: list[str], terms: ServiceTerms | None, text: Description
) -> tuple[str | None, str | None]:
    """Which agencies' inquiries the request still waits for, by name, or the event's own words."""
    if not pending or terms is None:
        return text.waiting_for_fa, text.waiting_for_en
    named = {f"{item.inquiry}@{item.agency}": item for item in terms.inquiries}
    agencies = [named[key] for key in pending if key in named]
    if not agencies:
        return text.waiting_for_fa, text.waiting_for_en
    fa = "، ".join(dict.fromkeys(item.agency_fa for item in agencies))
    en = ", ".join(dict.fromkeys(item.agency_en for item in agencies))
    return f"در انتظار پاسخ استعلام از {fa}", f"Waiting for the inquiry answer from {en}"


def _documents(record: ProjectedRequest, added: list[DocumentRef]) -> str:
    if not added:
        return record.documents
    known = json.loads(record.documents)
    known.extend(document.model_dump(mode="json") for document in added)
    return json.dumps(known, ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=8192)
def _add_working_days(calendar: WorkingCalendar, day: date, count: int) -> date:
    # Requests submitted the same day share their due date: a rebuild asks the same question thousands of times.
    return calendar.add_working_days(day, count)


def _due_on(record: ProjectedRequest, calendar: WorkingCalendar) -> None:
    """The due date from the working days allowed plus those spent waiting on the citizen; none while paused."""
    if record.duration_working_days is None or record.paused_since is not None:
        record.due_on = None
        return
    record.due_on = _add_working_days(
        calendar, tehran_day(record.submitted_at), record.duration_working_days + record.paused_working_days
    )


def _move_sla_clock(
    record: ProjectedRequest, previous: RequestState | None, at: datetime, cal: WorkingCalendar
) -> None:
    state = RequestState(record.status)
    if state in WAITING_ON_CITIZEN and previous not in WAITING_ON_CITIZEN:
        record.paused_since = at
        _due_on(record, cal)
    elif previous in WAITING_ON_CITIZEN and state not in WAITING_ON_CITIZEN and record.paused_since is not None:
        paused, resumed = tehran_day(record.paused_since), tehran_day(at)
        # max(): an event stamped before the pause (clock skew between producers) resumes on the pause's day.
        record.paused_working_days += cal.working_days_between(paused, max(paused, resumed))
        record.paused_since = None
        _due_on(record, cal)


def _terms(record: ProjectedRequest | None, event: RequestEvent, terms_of: TermsOf) -> ServiceTerms | None:
    """The terms of the request's service version (of the submission's, for a request not projected yet)."""
    if record is not None:
        return terms_of(record.service_id, record.catalog_version)
    return terms_of(event.service_id, event.catalog_version) if isinstance(event, RequestSubmitted) else None


def _refusal(record: ProjectedRequest | None, event: RequestEvent, names: Names) -> NotAuthorised | None:
    """Why the event may not act on this request, if it may not."""
    if record is None:
        return None
    # An agency may act only on its own requests: intake checked the key's scope, not the request itself.
    foreign = check_authority(event, agency=record.agency, service_id=record.service_id, names=names)
    if foreign is None:
        # Only the open complaint can be resolved: clearing it on any id would close the real one unanswered.
        foreign = check_complaint(event, open_complaint_id=record.open_complaint_id)
    return foreign


def _applied_entry(event: RequestEvent, seq: int, state: RequestState, text: Description) -> TimelineLine:
    return _entry(event, seq, state, text.detail_fa, text.detail_en)


def _new_request(event: RequestSubmitted, state: RequestState, digest: Callable[[str], str]) -> ProjectedRequest:
    return ProjectedRequest(
        tracking_code=event.tracking_code,
        national_id_digest=digest(event.applicant.national_id),
        service_id=event.service_id,
        catalog_version=event.catalog_version,
        agency=event.agency,
        status=state.value,
        submitted_at=event.occurred_at,
        updated_at=event.occurred_at,
    )


Waiting = tuple[str | None, str | None]


def _keep_submission(
    record: ProjectedRequest,
    event: RequestSubmitted | CorrectionSubmitted,
    terms: ServiceTerms | None,
    text: Description,
    calendar: WorkingCalendar,
) -> Waiting:
    # Every inquiry runs again on a correction, with what the citizen changed.
    everything = [f"{item.inquiry}@{item.agency}" for item in terms.inquiries] if terms else []
    record.pending_inquiries = " ".join(everything)
    record.documents = _documents(record, event.documents)
    if isinstance(event, RequestSubmitted) and terms is not None:
        record.duration_working_days = terms.duration_working_days
        _due_on(record, calendar)
    return _waiting_for_inquiries(everything, terms, text)


def _keep_verification(record: ProjectedRequest, event: VerificationCompleted) -> None:
    record.pending_inquiries = ""
    if event.next_step is NextStep.REJECT:
        record.decision = "reject"
        record.decision_reason_fa, record.decision_reason_en = event.reason_fa, event.reason_en
        record.decided_at = event.occurred_at


def _keep_decision(record: ProjectedRequest, event: RequestDecided) -> None:
    record.decision = event.decision.value
    record.decision_reason_fa, record.decision_reason_en = event.reason_fa, event.reason_en
    record.legal_basis = event.legal_basis
    record.decided_at = event.occurred_at


def _keep_result(record: ProjectedRequest, event: ResultDelivered) -> None:
    record.result = json.dumps(
        {
            "document": event.result.model_dump(mode="json") if event.result else None,
            "url": event.result_url,
            "summary_fa": event.summary_fa,
            "summary_en": event.summary_en,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    record.delivered_at = event.occurred_at


def _keep_complaint(record: ProjectedRequest, event: ComplaintFiled | ComplaintResolved) -> None:
    if isinstance(event, ComplaintFiled):
        record.open_complaint_id = event.complaint_id
        record.complaint_filed_at = event.occurred_at
    else:
        record.open_complaint_id = None
        record.complaint_filed_at = None


def _keep_facts(
    record: ProjectedRequest,
    event: RequestEvent,
    terms: ServiceTerms | None,
    text: Description,
    calendar: WorkingCalendar,
) -> Waiting:
    """Keep what the event says beyond the state (inquiries, documents, decision, result, complaint); returns
    what the request waits for now."""
    if isinstance(event, RequestSubmitted | CorrectionSubmitted):
        return _keep_submission(record, event, terms, text, calendar)
    if isinstance(event, InquiryCompleted):
        pending = [key for key in _pending(record) if key != f"{event.inquiry}@{event.agency}"]
        record.pending_inquiries = " ".join(pending)
        return _waiting_for_inquiries(pending, terms, text)
    if isinstance(event, VerificationCompleted):
        _keep_verification(record, event)
    elif isinstance(event, RequestDecided):
        _keep_decision(record, event)
    elif isinstance(event, ResultDelivered):
        _keep_result(record, event)
    elif isinstance(event, ComplaintFiled | ComplaintResolved):
        _keep_complaint(record, event)
    return text.waiting_for_fa, text.waiting_for_en


def _keep_state(
    record: ProjectedRequest,
    event: RequestEvent,
    outcome: Applied,
    waiting: Waiting,
    previous: RequestState | None,
    calendar: WorkingCalendar,
) -> None:
    """Move the row to the outcome's state and flags, what it waits for since when, and its SLA clock."""
    record.status = outcome.state.value
    record.sla_breached = outcome.flags.sla_breached
    record.complaint_open = outcome.flags.complaint_open
    if waiting != (record.waiting_for_fa, record.waiting_for_en) or record.waiting_since is None:
        record.waiting_since = event.occurred_at if waiting[0] else None
    record.waiting_for_fa, record.waiting_for_en = waiting
    record.updated_at = max(record.updated_at, event.occurred_at)
    _move_sla_clock(record, previous, event.occurred_at, calendar)


def _status_changed(record: ProjectedRequest, event: RequestEvent, outcome: Applied) -> StatusChanged:
    reason_fa, reason_en = status_reason(event)
    return StatusChanged(
        event_id=status_change_id(event.event_id),
        tracking_code=event.tracking_code,
        occurred_at=event.occurred_at,
        caused_by=event.event_id,
        caused_by_type=event.event_type,
        service_id=record.service_id,
        agency=record.agency,
        previous_status=outcome.previous,
        status=outcome.state,
        reason_fa=reason_fa,
        reason_en=reason_en,
    )


def fold(
    record: ProjectedRequest | None,
    event: RequestEvent,
    *,
    seq: int,
    digest: Callable[[str], str],
    terms_of: TermsOf,
    calendar: WorkingCalendar,
    want_change: bool = True,
) -> Folded:
    """Apply one event (not a duplicate: the caller checked its id) to the request's row, which it updates in place.

    `want_change=False` (a rebuild, which publishes nothing) skips building the StatusChanged.
    """
    terms = _terms(record, event, terms_of)
    names = terms.names if terms is not None else NO_NAMES
    foreign = _refusal(record, event, names)
    if foreign is not None:
        return Folded(record, refused_entry(event, seq, foreign.reason_fa, foreign.reason_en), None)
    previous = RequestState(record.status) if record else None
    flags = Flags(record.sla_breached, record.complaint_open) if record else Flags()
    outcome = apply(previous, trigger_for(event), flags)
    if not isinstance(outcome, Applied):
        return Folded(record, refused_entry(event, seq, outcome.reason_fa, outcome.reason), None)
    text = describe(event, outcome.state, names)
    entry = _applied_entry(event, seq, outcome.state, text)
    if record is None:
        assert isinstance(event, RequestSubmitted)  # only SUBMIT applies to no request
        record = _new_request(event, outcome.state, digest)
    waiting = _keep_facts(record, event, terms, text, calendar)
    _keep_state(record, event, outcome, waiting, previous, calendar)
    if not outcome.changed or not want_change:
        return Folded(record, entry, None)
    return Folded(record, entry, _status_changed(record, event, outcome))
