"""tracking's history route: the signed-in citizen's requests and their results (a session from identity).

Reading the history is recorded on desk.access first (shared/access_audit.py); without the record, no answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from shared.access_audit import AccessLog, personal_data
from shared.events import Purpose, ResourceKind
from shared.http import problem_responses
from shared.sessions import CitizenSessionDep

from .consumers import Tracking
from .schemas import HistoryOut, status_of
from .service import national_id_digest
from .service_history import requests_of

router = APIRouter(prefix="/api/v1/tracking/history")


@router.get(
    "",
    response_model=HistoryOut,
    responses=problem_responses(401, 503),
    summary="Your requests and their results (Authorization: Bearer <access token from identity's sign-in>)",
)
async def get_history(
    request: Request,
    session: CitizenSessionDep,
    access: Annotated[AccessLog, personal_data(ResourceKind.HISTORY, Purpose.FOLLOW_UP)],
) -> HistoryOut:
    """Only the session's own national ID: there is no way to name another."""
    deps: Tracking = request.app.state.tracking
    subject = national_id_digest(session.national_id, deps.lookup_key)
    records = await requests_of(deps.sessions, subject)
    await access.record(national_id=session.national_id, resource="history")
    return HistoryOut(requests=[status_of(record, []) for record in records])
