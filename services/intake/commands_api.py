"""HTTP routes of the citizen's and the agency's commands on a request (a use case's failure is answered by
the app's handler, problems_api.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Request, Security
from fastapi.security import APIKeyHeader

from shared.domain.identity import InvalidNationalId, normalize_national_id
from shared.domain.tracking_code import InvalidTrackingCode, format_for_display, parse_tracking_code
from shared.events import ComplaintFiled, ComplaintResolved
from shared.http import problem_responses
from shared.problems import bus_unavailable, problems_beside
from shared.service_kit import state_dependency

from .adapters import CITIZEN_ADDRESS
from .adapters_agency_keys import AgencyGrant
from .schemas import (
    AgencyCommandIn,
    CancellationIn,
    CitizenCommandIn,
    CommandAccepted,
    CommandIn,
    ComplaintIn,
    CorrectionIn,
    DecisionIn,
    ResolutionIn,
    ResultIn,
)
from .service import Command, Intake
from .service_commands import (
    AgencyTarget,
    CitizenTarget,
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

AGENCY_KEY_HEADER = "X-Agency-Key"


def _accepted(event: Command) -> CommandAccepted:
    return CommandAccepted(
        tracking_code=event.tracking_code,
        tracking_code_display=format_for_display(event.tracking_code),
        event_id=event.event_id,
        event_type=event.event_type,
        # The complaint a command files or answers: the id to follow it by.
        complaint_id=event.complaint_id if isinstance(event, ComplaintFiled | ComplaintResolved) else None,
    )


_PROBLEMS: Final = problems_beside(__file__)


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


def _citizen_target(intake: Intake, request: Request, tracking_code: str, body: CitizenCommandIn) -> CitizenTarget:
    """The request the citizen names (canonical code and national ID), or the uniform 404; 503 while the bus is
    down."""
    # tracking's lookup, made for this citizen, is throttled under their address, not intake's.
    CITIZEN_ADDRESS.set(request.client.host if request.client else None)
    try:
        target = CitizenTarget(parse_tracking_code(tracking_code), normalize_national_id(body.national_id))
    except (InvalidTrackingCode, InvalidNationalId) as error:
        raise RequestNotFound(tracking_code) from error
    if not intake.is_connected():
        raise bus_unavailable()
    return target


def _agency_target(intake: Intake, grant: AgencyGrant, tracking_code: str, body: AgencyCommandIn) -> AgencyTarget:
    """403 out of scope, 404 not a code, 503 while the bus is down; else the request the agency names."""
    check_scope(grant=grant, service_id=body.service_id)
    try:
        target = AgencyTarget(grant, parse_tracking_code(tracking_code), body.service_id)
    except InvalidTrackingCode as error:
        raise _PROBLEMS["agency-not-a-code"].error() from error
    if not intake.is_connected():
        raise bus_unavailable()
    return target


@dataclass(frozen=True)
class CommandGiver:
    """Who gives a kind of command: what the route learns of them (`who`, a parameter FastAPI fills), how it
    checks the request they name (`target`), and the problems it may answer."""

    who: Any
    target: Callable[[Intake, Any, str, Any], CitizenTarget | AgencyTarget]
    responses: dict[int | str, dict[str, Any]]


CITIZEN: Final = CommandGiver(Request, _citizen_target, problem_responses(404, 409, 422, 429, 503))
AGENCY: Final = CommandGiver(AgencyDep, _agency_target, problem_responses(401, 403, 404, 409, 422, 503))


def _no_path_fields() -> dict[str, str]:
    return {}


def _complaint_path_fields(complaint_id: ComplaintIdPath) -> dict[str, str]:
    return {"complaint_id": complaint_id}


@dataclass(frozen=True)
class CommandRoute:
    """One command's route, declared as data: its path and summary, its body, and the use case it runs with the
    body's values (and `path_fields`, what its path says besides the tracking code)."""

    path: str
    summary: str
    body: type[CommandIn]
    run: Callable[..., Awaitable[Command]]
    path_fields: Callable[..., dict[str, str]] = _no_path_fields

    @property
    def name(self) -> str:
        """The route's name, which its OpenAPI operationId is made of: post_ and the command, the path's end."""
        return "post_" + self.path.rsplit("/", 1)[1]


CITIZEN_COMMANDS: Final = (
    CommandRoute(
        "/requests/{tracking_code}/correction",
        "Correct a request that waits for your correction (tracking code + national ID)",
        CorrectionIn,
        submit_correction,
    ),
    CommandRoute(
        "/requests/{tracking_code}/cancellation",
        "Cancel a request that is not decided yet (tracking code + national ID)",
        CancellationIn,
        cancel_request,
    ),
    CommandRoute(
        "/requests/{tracking_code}/complaint",
        "Complain about a decision, or about a request past its deadline (tracking code + national ID)",
        ComplaintIn,
        file_complaint,
    ),
)
AGENCY_COMMANDS: Final = (
    CommandRoute(
        "/agency/requests/{tracking_code}/decision",
        "Decide a request under the agency's review (X-Agency-Key)",
        DecisionIn,
        decide,
    ),
    CommandRoute(
        "/agency/requests/{tracking_code}/result",
        "Deliver the result of an approved request (X-Agency-Key)",
        ResultIn,
        deliver_result,
    ),
    CommandRoute(
        "/agency/requests/{tracking_code}/complaints/{complaint_id}/resolution",
        "Answer the open complaint about a request (X-Agency-Key)",
        ResolutionIn,
        resolve_complaint,
        _complaint_path_fields,
    ),
)


def _add_route(command: CommandRoute, giver: CommandGiver) -> None:
    """Declare one command's route: accepted (202) with the command's event, or a problem."""

    async def endpoint(
        tracking_code: TrackingCodePath, body: CommandIn, intake: IntakeDep, who: Any, path_fields: dict[str, str]
    ) -> CommandAccepted:
        target = giver.target(intake, who, tracking_code, body)
        return _accepted(await command.run(intake=intake, target=target, **path_fields, **body.command_fields()))

    # FastAPI reads each parameter's model or dependency from the annotations: these are the command's own.
    endpoint.__annotations__.update(
        body=command.body, who=giver.who, path_fields=Annotated[dict[str, str], Depends(command.path_fields)]
    )
    router.add_api_route(
        command.path,
        endpoint,
        methods=["POST"],
        name=command.name,
        status_code=202,
        response_model=CommandAccepted,
        responses=giver.responses,
        summary=command.summary,
    )


for _command in CITIZEN_COMMANDS:
    _add_route(_command, CITIZEN)
for _command in AGENCY_COMMANDS:
    _add_route(_command, AGENCY)
