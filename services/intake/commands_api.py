"""HTTP routes of the citizen's and the agency's commands on a request (problem+json on every error)."""

from __future__ import annotations

from typing import Annotated

from aiokafka.structs import RecordMetadata
from fastapi import APIRouter, Depends, Path, Request, Security
from fastapi.security import APIKeyHeader
from faststream.kafka import KafkaBroker
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import TracerProvider
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.catalog import Catalog
from shared.domain.identity import InvalidNationalId, normalize_national_id
from shared.domain.text import MULTI_LINE, MultiLineText, SingleLineText, TypedNumberText
from shared.domain.tracking_code import InvalidTrackingCode, format_for_display, parse_tracking_code
from shared.events import (
    CommandEvent,
    ComplaintFiled,
    ComplaintResolved,
    CorrectionSubmitted,
    Decision,
    DocumentRef,
    RequestCancelled,
    RequestDecided,
    ResultDelivered,
)
from shared.http import (
    FieldProblem,
    ProblemError,
    bilingual_value_error,
    bus_unavailable,
    problem_responses,
    rate_limited,
    request_not_found,
)
from shared.kafka import BusConnection, publish_event
from shared.topics import Topic

from .adapters import CITIZEN_ADDRESS, LookupThrottled, TrackingClient, TrackingUnavailable
from .agency_keys import AgencyGrant, AgencyKeys
from .commands import (
    AgencyCommandRefused,
    Command,
    CommandRefused,
    Commands,
    InvalidCorrection,
    OutOfScope,
    RequestNotFound,
    cancel_request,
    check_scope,
    decide,
    deliver_result,
    file_complaint,
    resolve_complaint,
    submit_correction,
)
from .domain import STATE_FA, AgencyRefusal
from .service import BusUnavailable
from .settings import IntakeSettings
from .wiring import SOURCE

router = APIRouter(prefix="/api/v1")

AGENCY_KEY_HEADER = "X-Agency-Key"


CITIZEN_RESPONSES = problem_responses(404, 409, 422, 429, 503)
AGENCY_RESPONSES = problem_responses(401, 403, 404, 409, 422, 503)


# --- bodies and answers ---------------------------------------------------------------------------


# Free text of several lines, without control characters or bidi overrides (shared/domain/text.py).
Text500 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), MULTI_LINE]
Text1000 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), MULTI_LINE]
Text2000 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), MULTI_LINE]


class CitizenCommandIn(BaseModel):
    """The applicant's national ID: with the tracking code it proves the request is theirs."""

    model_config = ConfigDict(extra="forbid")

    national_id: TypedNumberText = Field(min_length=1, max_length=20, examples=["0012345679"])


class CorrectionIn(CitizenCommandIn):
    """The corrected values (field name → value) and any re-uploaded documents."""

    fields: dict[SingleLineText, Annotated[MultiLineText, Field(max_length=5000)]] = Field(
        default_factory=dict, max_length=50
    )
    # As returned by the upload; until the document store exists intake records the reference as declared.
    documents: list[DocumentRef] = Field(default_factory=list, max_length=20)
    note: Text2000 | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> CorrectionIn:
        if not self.fields and not self.documents:
            raise bilingual_value_error(
                "correction_empty",
                "a correction changes at least one field or document",
                "اصلاحیه دست‌کم یک مورد یا یک مدرک را تغییر می‌دهد.",
            )
        return self


class CancellationIn(CitizenCommandIn):
    """Withdraw a request that is not decided yet."""

    reason: Text500 | None = None


class ComplaintIn(CitizenCommandIn):
    """A complaint about the decision, or about a request left past its deadline."""

    text: Text2000


class AgencyCommandIn(BaseModel):
    """The service the request is for: it must be in the key's scope and be the request's own service."""

    model_config = ConfigDict(extra="forbid")

    service_id: str = Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9-]*$")


class DecisionIn(AgencyCommandIn):
    """An agency's decision on a request under its review."""

    decision: Decision
    reason_fa: Text2000 | None = Field(default=None, validate_default=True)
    reason_en: Text2000 | None = Field(default=None, validate_default=True)
    legal_basis: Text500 | None = Field(default=None, validate_default=True)

    @field_validator("reason_fa", "reason_en")
    @classmethod
    def _reason_unless_approved(cls, value: str | None, info: ValidationInfo) -> str | None:
        decision = info.data.get("decision")
        if value is None and decision is not None and decision is not Decision.APPROVE:
            raise bilingual_value_error(
                "decision_reason_missing",
                f"a {decision.value} decision needs its reason in Persian and English",
                "برای تصمیمی جز تأیید، علت آن به فارسی و انگلیسی لازم است.",
            )
        return value

    @field_validator("legal_basis")
    @classmethod
    def _legal_basis_for_rejection(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("decision") is Decision.REJECT:
            raise bilingual_value_error(
                "legal_basis_missing",
                "a rejection must name the law or regulation it rests on",
                "رد درخواست باید قانون یا مقرره‌ای را که بر آن استوار است نام ببرد.",
            )
        return value


class ResultRefIn(BaseModel):
    """The result: a stored document (`document_id`, with its media type and size) or a `url`."""

    model_config = ConfigDict(extra="forbid")

    document_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # Until the document store can say them itself, the agency states the document's type and size.
    media_type: SingleLineText | None = Field(default=None, min_length=1, max_length=100)
    size_bytes: int | None = Field(default=None, ge=0)
    url: HttpUrl | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ResultRefIn:
        if (self.document_id is None) == (self.url is None):
            raise bilingual_value_error(
                "result_reference",
                "give either document_id or url, exactly one",
                "دقیقاً یکی از این دو را بدهید: شناسهٔ سند یا نشانی اینترنتی.",
            )
        if self.document_id is not None and (self.media_type is None or self.size_bytes is None):
            raise bilingual_value_error(
                "result_document_details",
                "a document_id needs its media_type and size_bytes",
                "برای شناسهٔ سند، نوع و حجم آن هم لازم است.",
            )
        return self


class ResultIn(AgencyCommandIn):
    """The result of an approved request, with a summary for the citizen."""

    result: ResultRefIn
    summary_fa: Text1000
    summary_en: Text1000


class ResolutionIn(AgencyCommandIn):
    """The agency's answer to the open complaint."""

    resolution_fa: Text2000
    resolution_en: Text2000


class CommandAccepted(BaseModel):
    """The command was checked against the request and recorded on the bus; the request's timeline shows it
    applied (or, if another command overtook it in the meantime, refused)."""

    tracking_code: str
    tracking_code_display: str
    event_id: str
    event_type: str
    complaint_id: str | None = None


def _accepted(event: Command, complaint_id: str | None = None) -> CommandAccepted:
    return CommandAccepted(
        tracking_code=event.tracking_code,
        tracking_code_display=format_for_display(event.tracking_code),
        event_id=event.event_id,
        event_type=event.event_type,
        complaint_id=complaint_id,
    )


# --- problems -------------------------------------------------------------------------------------


def _not_found() -> ProblemError:
    # The same answer as tracking's lookup, for "no such code", "not your request" and "not a code" alike.
    return request_not_found()


def _agency_not_found() -> ProblemError:
    return ProblemError(
        status=404,
        slug="request-not-found",
        title_en="This is not a tracking code",
        title_fa="این کد رهگیری معتبر نیست",
        detail_en="A tracking code has 15 digits, the last being a check digit.",
        detail_fa="کد رهگیری ۱۵ رقم دارد و رقم آخر آن رقم کنترل است.",
    )


def _refused(error: CommandRefused) -> ProblemError:
    state = error.refused.state
    return ProblemError(
        status=409,
        slug="command-not-allowed",
        title_en=error.reason_en,
        title_fa=error.reason_fa,
        detail_en=f"The request is {state.value if state else 'unknown'}.",
        detail_fa=f"وضعیت کنونی درخواست: {STATE_FA[state] if state else 'نامشخص'}",
    )


_AGENCY_REFUSALS = {
    "unknown": (404, "request-not-found"),
    "not_responsible": (403, "not-your-request"),
    "wrong_service": (409, "service-mismatch"),
    "state": (409, "command-not-allowed"),
    "complaint": (409, "complaint-not-open"),
}


def _agency_refused(refusal: AgencyRefusal) -> ProblemError:
    status, slug = _AGENCY_REFUSALS[refusal.kind]
    state = refusal.state
    if status == 409 and state is not None:
        detail_en: str | None = f"The request is {state.value}."
        detail_fa: str | None = f"وضعیت کنونی درخواست: {STATE_FA[state]}"
    elif status == 404:
        detail_en, detail_fa = "Nothing was recorded. Check the code.", "چیزی ثبت نشد. کد را بررسی کنید."
    else:
        detail_en, detail_fa = "Nothing was recorded.", "چیزی ثبت نشد."
    return ProblemError(
        status=status,
        slug=slug,
        title_en=refusal.reason_en,
        title_fa=refusal.reason_fa,
        detail_en=detail_en,
        detail_fa=detail_fa,
    )


def _invalid_correction(error: InvalidCorrection) -> ProblemError:
    return ProblemError(
        status=422,
        slug="validation",
        title_en="The correction is not valid",
        title_fa="اصلاحیه معتبر نیست",
        detail_en="One or more corrected values do not fit the service's form.",
        detail_fa="یک یا چند مقدار اصلاحی با فرم خدمت هم‌خوان نیست.",
        errors=[
            FieldProblem(field=e.field, code=e.code, message_en=e.message_en, message_fa=e.message_fa)
            for e in error.errors
        ],
    )


def _bus_unavailable() -> ProblemError:
    return bus_unavailable()


def _tracking_unavailable() -> ProblemError:
    return ProblemError(
        status=503,
        slug="tracking-unavailable",
        title_en="The service desk cannot check the request right now",
        title_fa="میز خدمت در این لحظه نمی‌تواند درخواست را بررسی کند",
        detail_en="Nothing was recorded. Please try again in a few seconds.",
        detail_fa="چیزی ثبت نشد. لطفاً چند ثانیه دیگر دوباره تلاش کنید.",
        headers={"Retry-After": "5"},
    )


def _unauthenticated() -> ProblemError:
    return ProblemError(
        status=401,
        slug="agency-unauthenticated",
        title_en="A valid agency key is required",
        title_fa="کلید معتبر دستگاه لازم است",
        detail_en=f"Send your agency's API key in the {AGENCY_KEY_HEADER} header.",
        detail_fa=f"کلید دسترسی دستگاه خود را در سرآیند {AGENCY_KEY_HEADER} بفرستید.",
        headers={"WWW-Authenticate": f'ApiKey header="{AGENCY_KEY_HEADER}"'},
    )


def _out_of_scope(service_id: str) -> ProblemError:
    return ProblemError(
        status=403,
        slug="agency-out-of-scope",
        title_en="This agency key may not act on this service",
        title_fa="این کلید دستگاه اجازهٔ اقدام دربارهٔ این خدمت را ندارد",
        detail_en=f"The key's scope does not include the service '{service_id}'.",
        detail_fa=f"خدمت «{service_id}» در دامنهٔ این کلید نیست.",
    )


def _problem_for(error: Exception) -> ProblemError:
    """The answer to a use case's failure."""
    if isinstance(error, RequestNotFound):
        return _not_found()
    if isinstance(error, CommandRefused):
        return _refused(error)
    if isinstance(error, AgencyCommandRefused):
        return _agency_refused(error.refusal)
    if isinstance(error, InvalidCorrection):
        return _invalid_correction(error)
    if isinstance(error, TrackingUnavailable):
        return _tracking_unavailable()
    if isinstance(error, LookupThrottled):
        return rate_limited(error.retry_after_s)
    if isinstance(error, OutOfScope):
        return _out_of_scope(str(error))
    return _bus_unavailable()


_FAILURES = (
    RequestNotFound,
    CommandRefused,
    AgencyCommandRefused,
    InvalidCorrection,
    TrackingUnavailable,
    LookupThrottled,
    OutOfScope,
    BusUnavailable,
)


# --- dependencies ---------------------------------------------------------------------------------


def get_commands(request: Request) -> Commands:
    """The wired dependencies of the commands."""
    commands: Commands = request.app.state.commands
    return commands


CommandsDep = Annotated[Commands, Depends(get_commands)]

_agency_key = APIKeyHeader(
    name=AGENCY_KEY_HEADER,
    auto_error=False,
    description="The agency's API key; intake keeps only its sha256 and the services it may act on.",
)


def get_agency(commands: CommandsDep, key: Annotated[str | None, Security(_agency_key)]) -> AgencyGrant:
    """The agency behind the presented key (401 for a missing or unknown key); runs before the body is read."""
    grant = commands.agency_keys.authenticate(key)
    if grant is None:
        raise _unauthenticated()
    return grant


AgencyDep = Annotated[AgencyGrant, Depends(get_agency)]
TrackingCodePath = Annotated[str, Path(min_length=1, max_length=40, examples=["13160-00012-42902"])]
ComplaintIdPath = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


def _citizen_request(commands: Commands, request: Request, tracking_code: str, national_id: str) -> tuple[str, str]:
    """The canonical code and national ID, or the uniform 404; then 503 while the bus is down."""
    # tracking's lookup, made for this citizen, is throttled under their address, not intake's.
    CITIZEN_ADDRESS.set(request.client.host if request.client else None)
    try:
        code, normal_id = parse_tracking_code(tracking_code), normalize_national_id(national_id)
    except (InvalidTrackingCode, InvalidNationalId) as error:
        raise _not_found() from error
    if not commands.is_connected():
        raise _bus_unavailable()
    return code, normal_id


def _agency_request(commands: Commands, grant: AgencyGrant, tracking_code: str, service_id: str) -> str:
    """403 out of scope, 404 not a code, 503 while the bus is down; else the canonical code."""
    try:
        check_scope(grant, service_id)
        code = parse_tracking_code(tracking_code)
    except OutOfScope as error:
        raise _out_of_scope(service_id) from error
    except InvalidTrackingCode as error:
        raise _agency_not_found() from error
    if not commands.is_connected():
        raise _bus_unavailable()
    return code


# --- the citizen's commands -----------------------------------------------------------------------


@router.post(
    "/requests/{tracking_code}/correction",
    status_code=202,
    response_model=CommandAccepted,
    responses=CITIZEN_RESPONSES,
    summary="Correct a request that waits for your correction (tracking code + national ID)",
)
async def post_correction(
    tracking_code: TrackingCodePath, body: CorrectionIn, commands: CommandsDep, request: Request
) -> CommandAccepted:
    code, national_id = _citizen_request(commands, request, tracking_code, body.national_id)
    try:
        event = await submit_correction(
            commands,
            tracking_code=code,
            national_id=national_id,
            fields=body.fields,
            documents=body.documents,
            note=body.note,
        )
    except _FAILURES as error:
        raise _problem_for(error) from error
    return _accepted(event)


@router.post(
    "/requests/{tracking_code}/cancellation",
    status_code=202,
    response_model=CommandAccepted,
    responses=CITIZEN_RESPONSES,
    summary="Cancel a request that is not decided yet (tracking code + national ID)",
)
async def post_cancellation(
    tracking_code: TrackingCodePath, body: CancellationIn, commands: CommandsDep, request: Request
) -> CommandAccepted:
    code, national_id = _citizen_request(commands, request, tracking_code, body.national_id)
    try:
        event = await cancel_request(commands, tracking_code=code, national_id=national_id, reason=body.reason)
    except _FAILURES as error:
        raise _problem_for(error) from error
    return _accepted(event)


@router.post(
    "/requests/{tracking_code}/complaint",
    status_code=202,
    response_model=CommandAccepted,
    responses=CITIZEN_RESPONSES,
    summary="Complain about a decision, or about a request past its deadline (tracking code + national ID)",
)
async def post_complaint(
    tracking_code: TrackingCodePath, body: ComplaintIn, commands: CommandsDep, request: Request
) -> CommandAccepted:
    code, national_id = _citizen_request(commands, request, tracking_code, body.national_id)
    try:
        event = await file_complaint(commands, tracking_code=code, national_id=national_id, text=body.text)
    except _FAILURES as error:
        raise _problem_for(error) from error
    return _accepted(event, complaint_id=event.complaint_id)


# --- the agency's commands ------------------------------------------------------------------------


@router.post(
    "/agency/requests/{tracking_code}/decision",
    status_code=202,
    response_model=CommandAccepted,
    responses=AGENCY_RESPONSES,
    summary="Decide a request under the agency's review (X-Agency-Key)",
)
async def post_decision(
    tracking_code: TrackingCodePath, body: DecisionIn, grant: AgencyDep, commands: CommandsDep
) -> CommandAccepted:
    code = _agency_request(commands, grant, tracking_code, body.service_id)
    try:
        event = await decide(
            commands,
            grant=grant,
            tracking_code=code,
            service_id=body.service_id,
            decision=body.decision,
            reason_fa=body.reason_fa,
            reason_en=body.reason_en,
            legal_basis=body.legal_basis,
        )
    except _FAILURES as error:
        raise _problem_for(error) from error
    return _accepted(event)


@router.post(
    "/agency/requests/{tracking_code}/result",
    status_code=202,
    response_model=CommandAccepted,
    responses=AGENCY_RESPONSES,
    summary="Deliver the result of an approved request (X-Agency-Key)",
)
async def post_result(
    tracking_code: TrackingCodePath, body: ResultIn, grant: AgencyDep, commands: CommandsDep
) -> CommandAccepted:
    code = _agency_request(commands, grant, tracking_code, body.service_id)
    result = body.result
    document = None
    if result.document_id is not None:
        assert result.media_type is not None and result.size_bytes is not None  # checked by ResultRefIn
        document = DocumentRef(
            kind="result", sha256=result.document_id, media_type=result.media_type, size_bytes=result.size_bytes
        )
    try:
        event = await deliver_result(
            commands,
            grant=grant,
            tracking_code=code,
            service_id=body.service_id,
            document=document,
            url=str(result.url) if result.url is not None else None,
            summary_fa=body.summary_fa,
            summary_en=body.summary_en,
        )
    except _FAILURES as error:
        raise _problem_for(error) from error
    return _accepted(event)


@router.post(
    "/agency/requests/{tracking_code}/complaints/{complaint_id}/resolution",
    status_code=202,
    response_model=CommandAccepted,
    responses=AGENCY_RESPONSES,
    summary="Answer the open complaint about a request (X-Agency-Key)",
)
async def post_resolution(
    tracking_code: TrackingCodePath,
    complaint_id: ComplaintIdPath,
    body: ResolutionIn,
    grant: AgencyDep,
    commands: CommandsDep,
) -> CommandAccepted:
    code = _agency_request(commands, grant, tracking_code, body.service_id)
    try:
        event = await resolve_complaint(
            commands,
            grant=grant,
            tracking_code=code,
            service_id=body.service_id,
            complaint_id=complaint_id,
            resolution_fa=body.resolution_fa,
            resolution_en=body.resolution_en,
        )
    except _FAILURES as error:
        raise _problem_for(error) from error
    return _accepted(event, complaint_id=complaint_id)


# --- wiring ---------------------------------------------------------------------------------------

_PUBLISHED: tuple[tuple[type[CommandEvent], str], ...] = (
    (CorrectionSubmitted, "The citizen's correction of a request waiting for one; acks=all before intake answers."),
    (RequestCancelled, "The citizen's cancellation of an undecided request; acks=all before intake answers 202."),
    (ComplaintFiled, "The citizen's complaint about a decision or a breached SLA; acks=all before intake answers."),
    (
        RequestDecided,
        "An agency's decision (approve, reject with legal basis, needs correction), checked against the request "
        "in tracking's projection first; acks=all.",
    ),
    (
        ResultDelivered,
        "An agency's delivery of the result (a stored document or a link) on an approved request it is "
        "responsible for; acks=all.",
    ),
    (
        ComplaintResolved,
        "An agency's answer to the request's open complaint (its id checked first); acks=all before intake answers.",
    ),
)


def build_commands(
    settings: IntakeSettings,
    *,
    broker: KafkaBroker,
    bus: BusConnection,
    catalog: Catalog,
    tracer_provider: TracerProvider,
) -> Commands:
    """The commands' dependencies: tracking's client, the agency keys, and a publisher on `desk.requests`."""
    for schema, description in _PUBLISHED:
        # Declared for the AsyncAPI document: what intake puts on the bus.
        broker.publisher(
            Topic.REQUESTS, title=f"desk.requests:{schema.__name__}", description=description, schema=schema
        )
    tracking = TrackingClient(
        settings.tracking_url,
        timeout_s=settings.tracking_timeout_s,
        internal_key=settings.tracking_key.get_secret_value(),
    )
    HTTPXClientInstrumentor.instrument_client(tracking.http, tracer_provider=tracer_provider)

    async def publish(event: Command) -> RecordMetadata:
        return await publish_event(broker, event, topic=Topic.REQUESTS, source=SOURCE)

    return Commands(
        tracking=tracking,
        agency_keys=AgencyKeys.load(settings.agency_keys_file),
        catalog=catalog,
        publish=publish,
        is_connected=lambda: bus.connected.is_set(),
        accept_window_s=settings.accept_window_s,
        grace_s=settings.accept_grace_s,
        settle_s=settings.command_settle_s,
        settle_poll_s=settings.command_settle_poll_s,
    )
