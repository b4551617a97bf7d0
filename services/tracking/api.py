"""tracking's HTTP routes: status lookup by tracking code together with the applicant's national ID."""

from __future__ import annotations

from fastapi import APIRouter, Request

from shared.domain.identity import InvalidNationalId, normalize_national_id
from shared.domain.jalali import to_jalali_datetime_text
from shared.domain.tracking_code import InvalidTrackingCode, parse_tracking_code
from shared.http import Problem, ProblemError, request_not_found

from .handlers import Tracking
from .models import LookupIn, StatusOut, TimelineOut
from .service import lookup

router = APIRouter(prefix="/api/v1/tracking")


def _not_found() -> ProblemError:
    # One answer for "no such code" and "wrong national ID", so a lookup reveals nothing to a guesser.
    return request_not_found()


@router.post(
    "/lookup",
    response_model=StatusOut,
    responses={404: {"model": Problem, "content": {"application/problem+json": {}}}},
    summary="A request's status and timeline (tracking code + national ID, in the body, never the URL)",
)
async def post_lookup(query: LookupIn, request: Request) -> StatusOut:
    deps: Tracking = request.app.state.tracking
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
    record, entries = found
    return StatusOut(
        tracking_code=record.tracking_code,
        service_id=record.service_id,
        catalog_version=record.catalog_version,
        status=record.status,
        sla_breached=record.sla_breached,
        complaint_open=record.complaint_open,
        waiting_for_fa=record.waiting_for_fa,
        waiting_for_en=record.waiting_for_en,
        submitted_at=record.submitted_at,
        submitted_at_jalali=to_jalali_datetime_text(record.submitted_at),
        updated_at=record.updated_at,
        updated_at_jalali=to_jalali_datetime_text(record.updated_at),
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
