"""tracking's "who looked at my file" route: the signed-in citizen's own access records, newest first, paged.

Reading them is itself a read of personal data: recorded on desk.access first (shared/access_audit.py), like the
history; without the record, no answer. Staff are shown by role and organisation only (domain_audit.shown).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from shared.access_audit import AccessLog, personal_data
from shared.events import Purpose, ResourceKind
from shared.http import problem_responses
from shared.sessions import CitizenSessionDep

from .consumers import Tracking
from .schemas import AccessLogOut, access_log_out
from .service_audit import who_looked

router = APIRouter(prefix="/api/v1/tracking/access-log")

# What the access record of reading this list names as the resource read.
ACCESS_LOG_RESOURCE = "access-log"


@router.get(
    "",
    response_model=AccessLogOut,
    responses=problem_responses(401, 503),
    summary="Who looked at your file: every access to your requests and data, newest first (Authorization: Bearer)",
    description=(
        "The accesses recorded under the session's own citizen (nothing in the request names whose): the citizen, "
        "service-office operators, agencies' staff (by role and organisation only), agencies and the desk's "
        "services, with when, what and why. Pages run newest first: pass the answer's `next_before` as `before` "
        "for the next one. Records are kept as they are stored, so a read appears here a moment after it happened "
        "(this one included)."
    ),
)
async def get_access_log(
    request: Request,
    session: CitizenSessionDep,
    access: Annotated[AccessLog, personal_data(ResourceKind.ACCESS_LOG, Purpose.FOLLOW_UP)],
    before: Annotated[int | None, Query(ge=1, description="Only accesses before this one (a `next_before`)")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="At most this many accesses")] = 20,
) -> AccessLogOut:
    deps: Tracking = request.app.state.tracking
    # The desk-wide subject digest the records are chained under (KHEDMAT_AUDIT_SUBJECT_KEY), not tracking's own.
    subject = access.subject_of(session.national_id)
    page = await who_looked(sessions=deps.sessions, subject=subject, before=before, limit=limit)
    await access.record(subject=subject, resource=ACCESS_LOG_RESOURCE)
    return access_log_out(page.accesses, page.next_before, deps.names)
