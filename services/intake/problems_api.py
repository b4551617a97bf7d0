"""intake's answers to its use cases' failures: one exception handler, registered on the app, maps each to problem+json.

The routes raise nothing of their own for a use case's failure: what a refusal looks like to the caller is
said once, here (the shared answers, 429 and 503 on a down bus, are in shared/problems.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from shared.domain.state_machine import STATE_FA
from shared.domain.tracking_code import TrackingCodeExhausted
from shared.http import FieldProblem, ProblemError
from shared.problems import BUS_UNAVAILABLE, REQUEST_NOT_FOUND, ProblemSpec, rate_limited, unavailable

from .adapters import LookupThrottled, TrackingUnavailable
from .adapters_blobs import BlobStoreUnavailable
from .adapters_guards import IdempotencyUnavailable, InvalidIdempotencyKey
from .domain import FieldError, UnknownService
from .service import (
    BusUnavailable,
    DocumentStoreUnavailable,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InvalidSubmission,
    RateLimited,
)
from .service_commands import AgencyCommandRefused, CommandRefused, InvalidCorrection, OutOfScope, RequestNotFound
from .service_documents import DocumentErrorCode, DocumentRefused, UnknownDocumentKind


def _command_refused(error: CommandRefused) -> ProblemError:
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


def _agency_refused(error: AgencyCommandRefused) -> ProblemError:
    refusal = error.refusal
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


_STATUS_BY_CODE: Final = {
    DocumentErrorCode.TOO_LARGE: 413,
    DocumentErrorCode.FORMAT: 415,
    DocumentErrorCode.EMPTY: 422,
}


def _document_refused(error: DocumentRefused) -> ProblemError:
    requirement, errors = error.requirement, error.errors
    # check_upload lists size before format, so an oversized file answers 413 whatever else is wrong.
    status = _STATUS_BY_CODE.get(DocumentErrorCode(errors[0].code), 422)
    titles = {
        413: ("The file is too large", "حجم فایل بیش از حد مجاز است"),
        415: ("The file is not of an accepted type", "نوع فایل پذیرفته نیست"),
        422: ("The file cannot be accepted", "فایل پذیرفته نیست"),
    }
    title_en, title_fa = titles[status]
    return ProblemError(
        status=status,
        slug={413: "document-too-large", 415: "document-format", 422: "document-invalid"}[status],
        title_en=title_en,
        title_fa=title_fa,
        detail_en=f"'{requirement.title.en}' was not stored.",
        detail_fa=f"«{requirement.title.fa}» ذخیره نشد.",
        errors=_field_problems(errors),
    )


def _field_problems(errors: list[FieldError]) -> list[FieldProblem]:
    return [FieldProblem(field=e.field, code=e.code, message_en=e.message_en, message_fa=e.message_fa) for e in errors]


# The failures whose answer is fixed but for `{name}` fields in its details: each answer, once, as data.
_UNKNOWN_SERVICE: Final = ProblemSpec(
    status=404,
    slug="unknown-service",
    title_en="No such service",
    title_fa="چنین خدمتی وجود ندارد",
    detail_en="The catalog has no service '{service_id}'.",
    detail_fa="فهرست خدمات، خدمتی با شناسهٔ «{service_id}» ندارد.",
    field_problem=FieldProblem(
        field="service_id",
        code="unknown_service",
        message_en="Choose a service from the catalog.",
        message_fa="خدمتی از فهرست خدمات انتخاب کنید.",
    ),
)
_INVALID_CORRECTION: Final = ProblemSpec(
    status=422,
    slug="validation",
    title_en="The correction is not valid",
    title_fa="اصلاحیه معتبر نیست",
    detail_en="One or more corrected values do not fit the service's form.",
    detail_fa="یک یا چند مقدار اصلاحی با فرم خدمت هم‌خوان نیست.",
)
_INVALID_SUBMISSION: Final = ProblemSpec(
    status=422,
    slug="validation",
    title_en="The request is not valid",
    title_fa="درخواست معتبر نیست",
    detail_en="One or more fields are missing or malformed.",
    detail_fa="یک یا چند مورد وارد نشده یا نادرست است.",
)
_OUT_OF_SCOPE: Final = ProblemSpec(
    status=403,
    slug="agency-out-of-scope",
    title_en="This agency key may not act on this service",
    title_fa="این کلید دستگاه اجازهٔ اقدام دربارهٔ این خدمت را ندارد",
    detail_en="The key's scope does not include the service '{service_id}'.",
    detail_fa="خدمت «{service_id}» در دامنهٔ این کلید نیست.",
)
_UNKNOWN_KIND: Final = ProblemSpec(
    status=422,
    slug="unknown-document-kind",
    title_en="This service asks for no such document",
    title_fa="این خدمت چنین مدرکی نمی‌خواهد",
    detail_en="Service '{service_id}' asks for no document of kind '{kind}'.",
    detail_fa="خدمت «{service_fa}» مدرکی از نوع «{kind}» نمی‌خواهد.",
    field_problem=FieldProblem(
        field="kind",
        code=DocumentErrorCode.UNKNOWN_KIND,
        message_en="Choose a kind from the service's required documents.",
        message_fa="نوع مدرک را از فهرست مدارک لازمِ خدمت انتخاب کنید.",
    ),
)
_FIXED: Final[Mapping[type[Exception], ProblemSpec]] = {
    # Each of these leaves nothing recorded; a bus, code or store down answers as the bus does.
    BusUnavailable: BUS_UNAVAILABLE,
    DocumentStoreUnavailable: BUS_UNAVAILABLE,
    TrackingCodeExhausted: BUS_UNAVAILABLE,
    # The same answer as tracking's lookup, for "no such code", "not your request" and "not a code" alike.
    RequestNotFound: REQUEST_NOT_FOUND,
    TrackingUnavailable: unavailable(
        "tracking-unavailable",
        "The service desk cannot check the request right now",
        "میز خدمت در این لحظه نمی‌تواند درخواست را بررسی کند",
    ),
    # Without Redis a retry cannot be told from a new request: refuse rather than risk a duplicate.
    IdempotencyUnavailable: unavailable(
        "idempotency-unavailable",
        "Requests with an Idempotency-Key cannot be recorded right now",
        "درخواست‌های دارای کلید یکتایی در این لحظه ثبت نمی‌شوند",
    ),
    BlobStoreUnavailable: unavailable(
        "document-store-unavailable",
        "Documents cannot be stored right now",
        "در این لحظه امکان ذخیرهٔ مدارک نیست",
        detail_en="Nothing was stored. Please try again in a few seconds.",
        detail_fa="چیزی ذخیره نشد. لطفاً چند ثانیه دیگر دوباره تلاش کنید.",
    ),
    IdempotencyKeyReused: ProblemSpec(
        status=422,
        slug="idempotency-key-reused",
        title_en="This Idempotency-Key was used for a different request",
        title_fa="این کلید یکتایی پیش‌تر برای درخواست دیگری به کار رفته است",
        detail_en="Send a new Idempotency-Key for a new request; reuse a key only to retry the same body.",
        detail_fa="برای درخواست تازه کلید تازه بفرستید؛ کلید را فقط برای تکرار همان درخواست به کار ببرید.",
        field_problem=FieldProblem(
            field="Idempotency-Key",
            code="idempotency_key_reused",
            message_en="This key belongs to another request body.",
            message_fa="این کلید متعلق به درخواست دیگری است.",
        ),
    ),
    IdempotencyKeyInFlight: ProblemSpec(
        status=409,
        slug="idempotency-key-in-progress",
        title_en="The first attempt with this Idempotency-Key is still being recorded",
        title_fa="درخواست نخست با این کلید یکتایی هنوز در حال ثبت است",
        detail_en="Retry in a moment to get its tracking code.",
        detail_fa="چند لحظه بعد دوباره بفرستید تا کد رهگیری آن را بگیرید.",
        headers={"Retry-After": "2"},
    ),
    InvalidIdempotencyKey: ProblemSpec(
        status=422,
        slug="idempotency-key-invalid",
        title_en="The Idempotency-Key header is not valid",
        title_fa="سرآیند کلید یکتایی (Idempotency-Key) معتبر نیست",
        detail_en="Use 1 to 128 printable ASCII characters, for example a UUID.",
        detail_fa="از ۱ تا ۱۲۸ نویسهٔ اسکی چاپ‌پذیر استفاده کنید، مثلاً یک شناسهٔ یکتای جهانی.",
        field_problem=FieldProblem(
            field="Idempotency-Key",
            code="idempotency_key_invalid",
            message_en="1 to 128 printable ASCII characters.",
            message_fa="۱ تا ۱۲۸ نویسهٔ اسکی چاپ‌پذیر.",
        ),
    ),
}


def _fixed(spec: ProblemSpec) -> Callable[[Exception], ProblemError]:
    """The builder of a fixed answer: the failure itself says nothing more."""
    return lambda _error: spec.error()


def _rate_limited(error: RateLimited | LookupThrottled) -> ProblemError:
    return rate_limited(error.retry_after_s)


# Each failure of a use case, and its answer (looked up by the exception's class, most specific first).
PROBLEMS: Final[Mapping[type[Exception], Callable[[Any], ProblemError]]] = {
    **{kind: _fixed(spec) for kind, spec in _FIXED.items()},
    UnknownService: lambda error: _UNKNOWN_SERVICE.error(service_id=str(error)),
    OutOfScope: lambda error: _OUT_OF_SCOPE.error(service_id=str(error)),
    UnknownDocumentKind: lambda error: _UNKNOWN_KIND.error(
        service_id=error.service.id, service_fa=error.service.title.fa, kind=error.kind
    ),
    InvalidSubmission: lambda error: _INVALID_SUBMISSION.error(_field_problems(error.errors)),
    InvalidCorrection: lambda error: _INVALID_CORRECTION.error(_field_problems(error.errors)),
    RateLimited: _rate_limited,
    LookupThrottled: _rate_limited,
    CommandRefused: _command_refused,
    AgencyCommandRefused: _agency_refused,
    DocumentRefused: _document_refused,
}
