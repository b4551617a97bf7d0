"""HTTP routes of the citizen's and the agency's commands on a request (a use case's failure is answered by
the app's handler, problems_api.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Depends, Path, Request, Security
from fastapi.security import APIKeyHeader
from fastapi.types import DecoratedCallable

from shared.domain.identity import InvalidNationalId, normalize_national_id
from shared.domain.tracking_code import InvalidTrackingCode, format_for_display, parse_tracking_code
from shared.http import problem_responses
from shared.problems import bus_unavailable, problems_beside
from shared.service_kit import state_dependency

from .adapters import CITIZEN_ADDRESS
from .adapters_agency_keys import AgencyGrant
from .schemas import CancellationIn, CommandAccepted, ComplaintIn, CorrectionIn, DecisionIn, ResolutionIn, ResultIn
from .service import Command, Intake
from .service_commands import (
    RequestNotFound,
    cancel_request,
    check_scope,
    decide,
    deliver_result,
    file_complaint,
    resolve_complaint,
    submit_correction,
)

router = APIRouter(prefix="/api/v1")

# The event a command's use case publishes, kept exact so that a route can read its own fields.
CommandT = TypeVar("CommandT", bound=Command)

AGENCY_KEY_HEADER = "X-Agency-Key"


CITIZEN_RESPONSES = problem_responses(404, 409, 422, 429, 503)
AGENCY_RESPONSES = problem_responses(401, 403, 404, 409, 422, 503)


def _accepted(event: Command, complaint_id: str | None = None) -> CommandAccepted:
    return CommandAccepted(
        tracking_code=event.tracking_code,
        tracking_code_display=format_for_display(event.tracking_code),
        event_id=event.event_id,
        event_type=event.event_type,
        complaint_id=complaint_id,
    )


_PROBLEMS: Final = problems_beside(__file__)


def _command_route(
    path: str, responses: dict[int | str, dict[str, Any]], summary: str
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """The decorator of one command's route: accepted (202) with the command's event, or a problem."""
    return router.post(path, status_code=202, response_model=CommandAccepted, responses=responses, summary=summary)


# --- dependencies ---------------------------------------------------------------------------------

IntakeDep = Annotated[Intake, Depends(state_dependency("intake", Intake))]

_agency_key = APIKeyHeader(
    name=AGENCY_KEY_HEADER,
    auto_error=False,
    description="The agency's API key; intake keeps only its sha256 and the services it may act on.",
)


def get_agency(intake: IntakeDep, key: Annotated[str | None, Security(_agency_key)]) -> AgencyGrant:
    """The agency behind the presented key (401 for a missing or unknown key); runs before the body is read."""
    grant = intake.agency_keys.authenticate(key)
    if grant is None:
        raise _PROBLEMS["agency-unauthenticated"].error(
            headers={"WWW-Authenticate": f'ApiKey header="{AGENCY_KEY_HEADER}"'}, header=AGENCY_KEY_HEADER
        )
    return grant


AgencyDep = Annotated[AgencyGrant, Depends(get_agency)]
TrackingCodePath = Annotated[str, Path(min_length=1, max_length=40, examples=["13160-00012-42902"])]
ComplaintIdPath = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


def _citizen_request(intake: Intake, request: Request, tracking_code: str, national_id: str) -> tuple[str, str]:
    """The canonical code and national ID, or the uniform 404; then 503 while the bus is down."""
    # tracking's lookup, made for this citizen, is throttled under their address, not intake's.
    CITIZEN_ADDRESS.set(request.client.host if request.client else None)
    try:
        code, normal_id = parse_tracking_code(tracking_code), normalize_national_id(national_id)
    except (InvalidTrackingCode, InvalidNationalId) as error:
        raise RequestNotFound(tracking_code) from error
    if not intake.is_connected():
        raise bus_unavailable()
    return code, normal_id


def _agency_request(intake: Intake, grant: AgencyGrant, tracking_code: str, service_id: str) -> str:
    """403 out of scope, 404 not a code, 503 while the bus is down; else the canonical code."""
    check_scope(grant=grant, service_id=service_id)
    try:
        code = parse_tracking_code(tracking_code)
    except InvalidTrackingCode as error:
        raise _PROBLEMS["agency-not-a-code"].error() from error
    if not intake.is_connected():
        raise bus_unavailable()
    return code


async def _citizen_command(
    run: Callable[..., Awaitable[CommandT]],
    intake: Intake,
    request: Request,
    tracking_code: str,
    national_id: str,
    **fields: Any,
) -> CommandT:
    """One citizen's command: the checked code and ID, then the use case `run` with the body's `fields`."""
    code, normal_id = _citizen_request(intake, request, tracking_code, national_id)
    return await run(intake=intake, tracking_code=code, national_id=normal_id, **fields)


async def _agency_command(
    run: Callable[..., Awaitable[CommandT]],
    intake: Intake,
    grant: AgencyGrant,
    tracking_code: str,
    service_id: str,
    **fields: Any,
) -> CommandT:
    """One agency's command: scope and code checked, then the use case `run` with the body's `fields`."""
    code = _agency_request(intake, grant, tracking_code, service_id)
    return await run(intake=intake, grant=grant, tracking_code=code, service_id=service_id, **fields)


# --- the citizen's commands -----------------------------------------------------------------------


@_command_route(
    "/requests/{tracking_code}/correction",
    CITIZEN_RESPONSES,
    "Correct a request that waits for your correction (tracking code + national ID)",
)
async def post_correction(
    tracking_code: TrackingCodePath, body: CorrectionIn, intake: IntakeDep, request: Request
) -> CommandAccepted:
    event = await _citizen_command(
        submit_correction,
        intake,
        request,
        tracking_code,
        body.national_id,
        fields=body.fields,
        documents=body.documents,
        note=body.note,
    )
    return _accepted(event)


@_command_route(
    "/requests/{tracking_code}/cancellation",
    CITIZEN_RESPONSES,
    "Cancel a request that is not decided yet (tracking code + national ID)",
)
async def post_cancellation(
    tracking_code: TrackingCodePath, body: CancellationIn, intake: IntakeDep, request: Request
) -> CommandAccepted:
    event = await _citizen_command(cancel_request, intake, request, tracking_code, body.national_id, reason=body.reason)
    return _accepted(event)


@_command_route(
    "/requests/{tracking_code}/complaint",
    CITIZEN_RESPONSES,
    "Complain about a decision, or about a request past its deadline (tracking code + national ID)",
)
async def post_complaint(
    tracking_code: TrackingCodePath, body: ComplaintIn, intake: IntakeDep, request: Request
) -> CommandAccepted:
    event = await _citizen_command(file_complaint, intake, request, tracking_code, body.national_id, text=body.text)
    return _accepted(event, complaint_id=event.complaint_id)


# --- the agency's commands ------------------------------------------------------------------------


@_command_route(
    "/agency/requests/{tracking_code}/decision",
    AGENCY_RESPONSES,
    "Decide a request under the agency's review (X-Agency-Key)",
)
async def post_decision(
    tracking_code: TrackingCodePath, body: DecisionIn, grant: AgencyDep, intake: IntakeDep
) -> CommandAccepted:
    event = await _agency_command(
        decide,
        intake,
        grant,
        tracking_code,
        body.service_id,
        decision=body.decision,
        reason_fa=body.reason_fa,
        reason_en=body.reason_en,
        legal_basis=body.legal_basis,
    )
    return _accepted(event)


@_command_route(
    "/agency/requests/{tracking_code}/result",
    AGENCY_RESPONSES,
    "Deliver the result of an approved request (X-Agency-Key)",
)
async def post_result(
    tracking_code: TrackingCodePath, body: ResultIn, grant: AgencyDep, intake: IntakeDep
) -> CommandAccepted:
    event = await _agency_command(
        deliver_result,
        intake,
        grant,
        tracking_code,
        body.service_id,
        document=body.result.document(),
        url=str(body.result.url) if body.result.url is not None else None,
        summary_fa=body.summary_fa,
        summary_en=body.summary_en,
    )
    return _accepted(event)


@_command_route(
    "/agency/requests/{tracking_code}/complaints/{complaint_id}/resolution",
    AGENCY_RESPONSES,
    "Answer the open complaint about a request (X-Agency-Key)",
)
async def post_resolution(
    tracking_code: TrackingCodePath,
    complaint_id: ComplaintIdPath,
    body: ResolutionIn,
    grant: AgencyDep,
    intake: IntakeDep,
) -> CommandAccepted:
    event = await _agency_command(
        resolve_complaint,
        intake,
        grant,
        tracking_code,
        body.service_id,
        complaint_id=complaint_id,
        resolution_fa=body.resolution_fa,
        resolution_en=body.resolution_en,
    )
    return _accepted(event, complaint_id=complaint_id)
