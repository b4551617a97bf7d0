"""tracking's internal route for the other services: a request's facts by its code alone, with no personal data.

intake checks each agency command against these facts before it accepts the command. The route is protected
by a service key (`TRACKING_INTERNAL_KEY`, presented as `X-Internal-Key`), not by the applicant's national ID,
and is not counted against the per-citizen lookup budgets: it answers only what an agency may know of a request
it is responsible for (service, agency, state, flags, open complaint id), never the applicant.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from shared.domain.tracking_code import InvalidTrackingCode, parse_tracking_code
from shared.http import problem_responses
from shared.problems import ProblemSpec, check_internal_key

from .consumers import Tracking
from .schemas import RequestFactsOut
from .service import request_facts

internal_router = APIRouter(prefix="/internal/v1", tags=["internal"])


_UNKNOWN = ProblemSpec(
    status=404,
    slug="request-unknown",
    title_en="The projection holds no request with this tracking code",
    title_fa="درخواستی با این کد رهگیری در پیگیری ثبت نشده است",
)


@internal_router.get(
    "/requests/{tracking_code}",
    response_model=RequestFactsOut,
    responses=problem_responses(401, 404),
    summary="A request's service, agency, state, flags and open complaint (service key; no personal data)",
)
async def get_request_facts(
    tracking_code: Annotated[str, Path(min_length=1, max_length=40)], request: Request
) -> RequestFactsOut:
    check_internal_key(request, request.app.state.internal_key)
    try:
        code = parse_tracking_code(tracking_code)
    except InvalidTrackingCode as error:
        raise _UNKNOWN.error() from error
    deps: Tracking = request.app.state.tracking
    record = await request_facts(sessions=deps.sessions, tracking_code=code)
    if record is None:
        raise _UNKNOWN.error()
    # The row's columns by name; its status string is read as the state it names.
    return RequestFactsOut.model_validate(record, from_attributes=True)
