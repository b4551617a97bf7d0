"""tracking's HTTP routes: status lookup by tracking code together with the applicant's national ID.

Both routes return the citizen's request: each successful call is recorded on desk.access first (`asked_for`).
Anyone may look a request up with its code and national ID, within the lookup budgets (adapters_throttle.py); the
applicant may also send their session (identity's access token), which spares them the code's budgets, so a
stranger's failed guesses at their code never lock them out.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.sse import EventSourceResponse, ServerSentEvent

from shared.access_audit import AccessLog, personal_data
from shared.domain.identity import InvalidNationalId, normalize_national_id
from shared.domain.tracking_code import InvalidTrackingCode, parse_tracking_code
from shared.events import Purpose, ResourceKind
from shared.http import ProblemError, problem_responses
from shared.problems import rate_limited, request_not_found
from shared.sessions import (
    SESSION_REFUSED,
    SESSION_VERIFIER_STATE,
    CitizenSession,
    SessionRefused,
    SessionsUnavailable,
    SessionVerifier,
    citizen_bearer,
)

from .consumers import Tracking
from .schemas import LookupIn, StatusOut, status_of
from .service import lookup, national_id_digest, notifications_of

router = APIRouter(prefix="/api/v1/tracking")


def _not_found() -> ProblemError:
    # One answer for "no such code" and "wrong national ID", so a lookup reveals nothing to a guesser.
    return request_not_found()


async def answer_for(deps: Tracking, tracking_code: str, national_id: str) -> StatusOut | None:
    """The request's answer for this applicant, from the cache when it is hot; None, uniformly, otherwise."""
    expected = national_id_digest(national_id, deps.lookup_key)
    cached = await deps.cache.get(tracking_code)
    if cached is not None:
        digest, stored = cached
        return StatusOut.model_validate(stored) if hmac.compare_digest(digest, expected) else None
    found = await lookup(
        sessions=deps.sessions, tracking_code=tracking_code, national_id=national_id, lookup_key=deps.lookup_key
    )
    if found is None:
        return None
    record, entries = found
    notifications = await notifications_of(sessions=deps.sessions, tracking_code=tracking_code)
    answer = status_of(record, entries, notifications)
    await deps.cache.put(tracking_code, record.national_id_digest, answer.model_dump(mode="json"))
    return answer


@dataclass(frozen=True)
class Found:
    """A request the caller may see: its canonical code, the applicant's national ID, and its answer now."""

    tracking_code: str
    national_id: str
    answer: StatusOut


# The lookup and the live stream read the citizen's request for their follow-up.
RequestAccess = Annotated[AccessLog, personal_data(ResourceKind.REQUEST, Purpose.FOLLOW_UP)]


async def optional_session(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(citizen_bearer)]
) -> CitizenSession | None:
    """The caller's session when they send one: none sent is an anonymous lookup, an invalid one the 401 of every
    session route. When sessions cannot be checked (Redis down) the lookup goes on as an anonymous one: the
    session only spares the code's budgets, and an unchecked one must not."""
    if credentials is None:
        return None
    verifier: SessionVerifier = getattr(request.app.state, SESSION_VERIFIER_STATE)
    try:
        return await verifier.verify(credentials.credentials)
    except SessionRefused:
        raise SESSION_REFUSED.error() from None
    except SessionsUnavailable:
        return None


def _own(session: CitizenSession | None, national_id: str) -> bool:
    """Whether the lookup is made under the session of the national ID it names (whose request it then is, if
    the projection agrees: the record's digest is checked as for anyone)."""
    if session is None:
        return False
    try:
        return normalize_national_id(session.national_id) == normalize_national_id(national_id)
    except InvalidNationalId:
        return False


async def asked_for(
    query: LookupIn,
    request: Request,
    access: RequestAccess,
    session: Annotated[CitizenSession | None, Depends(optional_session)],
) -> Found:
    """The request the caller may see, its access recorded: else 429, the uniform 404, or 503 unrecorded."""
    deps: Tracking = request.app.state.tracking
    signed_in = _own(session, query.national_id)
    # Counted before anything is looked at, for codes that exist and codes that do not alike.
    decision = await deps.throttle.admit(
        client=request.client.host if request.client else "unknown",
        tracking_code=query.tracking_code,
        signed_in=signed_in,
    )
    if not decision.allowed:
        raise rate_limited(decision.retry_after_s)
    found = await _found(deps, query)
    await deps.throttle.settle(tracking_code=query.tracking_code, found=found is not None, signed_in=signed_in)
    if found is None:
        raise _not_found()
    await access.record(national_id=found.national_id, resource=found.tracking_code)
    return found


async def _found(deps: Tracking, query: LookupIn) -> Found | None:
    """The request of this code and national ID; None alike for no such code, another's code and malformed text."""
    try:
        code = parse_tracking_code(query.tracking_code)
        national_id = normalize_national_id(query.national_id)
    except (InvalidTrackingCode, InvalidNationalId):
        return None
    answer = await answer_for(deps, code, national_id)
    return None if answer is None else Found(code, national_id, answer)


AskedFor = Annotated[Found, Depends(asked_for)]

# The session is optional: an empty requirement beside the bearer scheme says so in the OpenAPI document.
SESSION_OPTIONAL: dict[str, object] = {"security": [{}]}
LOOKUP_DESCRIPTION = (
    "Anyone with the code and the applicant's national ID may look the request up, within budgets: per client "
    "address, and per code for the lookups that find nothing (once full, the code's anonymous lookups answer 429 "
    "for a while) and, apart, for those that find it. The applicant signed in (`Authorization: Bearer` with "
    "identity's access token, the body naming the session's own national ID) is spared the code's budgets: a "
    "stranger's wrong guesses never lock them out. An invalid token is a 401; without one the lookup is anonymous."
)


@router.post(
    "/lookup",
    response_model=StatusOut,
    responses=problem_responses(401, 404, 429),
    summary="A request's status and timeline (tracking code + national ID, in the body, never the URL)",
    description=LOOKUP_DESCRIPTION,
    openapi_extra=SESSION_OPTIONAL,
)
async def post_lookup(found: AskedFor) -> StatusOut:
    return found.answer


@router.post(
    "/events",
    response_class=EventSourceResponse,
    responses=problem_responses(401, 404, 429),
    openapi_extra=SESSION_OPTIONAL,
    summary="Live updates of one request as Server-Sent Events (POST: the national ID stays out of the URL)",
    description=(
        "The first `status` event is the request as it stands; each later one follows a change of it (its status, "
        "timeline, flags, or how a notification about it went). The stream "
        "ends after `TRACKING_STREAM_MAX_S`; reconnect to go on. Clients that can only GET (EventSource) use a "
        "fetch-based SSE client."
    ),
)
async def post_events(found: AskedFor, request: Request) -> AsyncIterator[ServerSentEvent]:
    deps: Tracking = request.app.state.tracking
    shown: tuple[object, ...] | None = None
    answer: StatusOut | None = found.answer
    deadline = time.monotonic() + deps.stream_max_s
    while answer is not None and time.monotonic() < deadline and not await request.is_disconnected():
        told = tuple((item.status_event_id, item.channel, item.state) for item in answer.notifications)
        seen = (
            answer.status,
            len(answer.timeline),
            answer.updated_at,
            answer.sla_breached,
            answer.complaint_open,
            told,
        )
        if seen != shown:
            yield ServerSentEvent(data=answer.model_dump(mode="json"), event="status", id=str(len(answer.timeline)))
            shown = seen
        await deps.changes.wait(found.tracking_code)
        answer = await answer_for(deps, found.tracking_code, found.national_id)
