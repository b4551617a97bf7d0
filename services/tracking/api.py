"""tracking's HTTP routes: status lookup by tracking code together with the applicant's national ID."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from shared.domain.identity import InvalidNationalId, normalize_national_id
from shared.domain.jalali import to_jalali_datetime_text, to_jalali_text
from shared.domain.tracking_code import InvalidTrackingCode, parse_tracking_code
from shared.http import ProblemError, problem_responses, rate_limited, request_not_found

from .handlers import Tracking
from .models import (
    ComplaintOut,
    DecisionOut,
    DocumentOut,
    LookupIn,
    RequestRecord,
    ResultOut,
    StatusOut,
    TimelineEntry,
    TimelineOut,
)
from .service import lookup

router = APIRouter(prefix="/api/v1/tracking")


def _not_found() -> ProblemError:
    # One answer for "no such code" and "wrong national ID", so a lookup reveals nothing to a guesser.
    return request_not_found()


def status_of(record: RequestRecord, entries: list[TimelineEntry]) -> StatusOut:
    """The citizen's view of a projected request."""
    result = json.loads(record.result) if record.result else None
    return StatusOut(
        tracking_code=record.tracking_code,
        service_id=record.service_id,
        catalog_version=record.catalog_version,
        status=record.status,
        sla_breached=record.sla_breached,
        complaint_open=record.complaint_open,
        waiting_for_fa=record.waiting_for_fa,
        waiting_for_en=record.waiting_for_en,
        waiting_since=record.waiting_since,
        submitted_at=record.submitted_at,
        submitted_at_jalali=to_jalali_datetime_text(record.submitted_at),
        updated_at=record.updated_at,
        updated_at_jalali=to_jalali_datetime_text(record.updated_at),
        duration_working_days=record.duration_working_days,
        due_on=record.due_on,
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
    )


@router.post(
    "/lookup",
    response_model=StatusOut,
    responses=problem_responses(404, 429),
    summary="A request's status and timeline (tracking code + national ID, in the body, never the URL)",
)
async def post_lookup(query: LookupIn, request: Request) -> StatusOut:
    deps: Tracking = request.app.state.tracking
    # Counted before anything is looked at, for codes that exist and codes that do not alike.
    decision = await deps.throttle.hit(
        client=request.client.host if request.client else "unknown", tracking_code=query.tracking_code
    )
    if not decision.allowed:
        raise rate_limited(decision.retry_after_s)
    try:
        code = parse_tracking_code(query.tracking_code)
        national_id = normalize_national_id(query.national_id)
    except (InvalidTrackingCode, InvalidNationalId) as error:
        raise _not_found() from error
    found = await lookup(
        sessions=deps.sessions, tracking_code=code, national_id=national_id, lookup_key=deps.lookup_key
    )
    if found is None:
        raise _not_found()
    return status_of(*found)
