"""intake's answers to its use cases' failures: one exception handler, registered on the app, maps each to problem+json.

The routes raise nothing of their own for a use case's failure: what a refusal looks like to the caller is
said once, its words in problems.yaml and which failure gets it here (the shared answers, 429 and 503 on a down
bus, are in shared/problems.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypedDict

from shared.domain.state_machine import STATE_FA, RequestState
from shared.domain.tracking_code import TrackingCodeExhausted
from shared.http import FieldProblem, ProblemError, validation_error
from shared.problems import (
    BUS_UNAVAILABLE,
    REQUEST_NOT_FOUND,
    ProblemSpec,
    problems_beside,
    rate_limited,
    unavailable,
)

from .adapters import LookupThrottled, TrackingUnavailable
from .adapters_blobs import BlobStoreUnavailable
from .adapters_guards import IdempotencyUnavailable, InvalidIdempotencyKey
from .domain import FieldError, UnknownService
from .domain_commands import RefusalKind
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

_PROBLEMS: Final = problems_beside(__file__)
# Why tracking's view refuses an agency's command, and the answer to each.
_AGENCY_REFUSALS: Final[Mapping[RefusalKind, ProblemSpec]] = {
    "unknown": _PROBLEMS["agency-request-unknown"],
    "not_responsible": _PROBLEMS["not-your-request"],
    "wrong_service": _PROBLEMS["service-mismatch"],
    "state": _PROBLEMS["command-not-allowed"],
    "complaint": _PROBLEMS["complaint-not-open"],
}
# check_upload lists size before format, so an oversized file answers 413 whatever else is wrong.
_DOCUMENT_REFUSALS: Final[Mapping[str, ProblemSpec]] = {
    DocumentErrorCode.TOO_LARGE: _PROBLEMS["document-too-large"],
    DocumentErrorCode.FORMAT: _PROBLEMS["document-format"],
}
_DOCUMENT_INVALID: Final = _PROBLEMS["document-invalid"]


class _StateWords(TypedDict):
    state: str
    state_fa: str


def _state(state: RequestState | None) -> _StateWords:
    """The request's current state for a refusal's detail, in both languages."""
    return {"state": state.value if state else "unknown", "state_fa": STATE_FA[state] if state else "نامشخص"}


def _command_refused(error: CommandRefused) -> ProblemError:
    refused = _PROBLEMS["command-not-allowed"]
    return refused.error(reason_en=error.reason_en, reason_fa=error.reason_fa, **_state(error.refused.state))


def _agency_refused(error: AgencyCommandRefused) -> ProblemError:
    refusal = error.refusal
    return _AGENCY_REFUSALS[refusal.kind].error(
        reason_en=refusal.reason_en, reason_fa=refusal.reason_fa, **_state(refusal.state)
    )


def _document_refused(error: DocumentRefused) -> ProblemError:
    spec = _DOCUMENT_REFUSALS.get(error.errors[0].code, _DOCUMENT_INVALID)
    title = error.requirement.title
    return spec.error(_field_problems(error.errors), document_en=title.en, document_fa=title.fa)


def _field_problems(errors: list[FieldError]) -> list[FieldProblem]:
    return [FieldProblem(field=e.field, code=e.code, message_en=e.message_en, message_fa=e.message_fa) for e in errors]


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
    IdempotencyKeyReused: _PROBLEMS["idempotency-key-reused"],
    IdempotencyKeyInFlight: _PROBLEMS["idempotency-key-in-progress"],
    InvalidIdempotencyKey: _PROBLEMS["idempotency-key-invalid"],
}


def _fixed(spec: ProblemSpec) -> Callable[[Exception], ProblemError]:
    """The builder of a fixed answer: the failure itself says nothing more."""
    return lambda _error: spec.error()


def _rate_limited(error: RateLimited | LookupThrottled) -> ProblemError:
    return rate_limited(error.retry_after_s)


# Each failure of a use case, and its answer (looked up by the exception's class, most specific first).
PROBLEMS: Final[Mapping[type[Exception], Callable[[Any], ProblemError]]] = {
    **{kind: _fixed(spec) for kind, spec in _FIXED.items()},
    UnknownService: lambda error: _PROBLEMS["unknown-service"].error(service_id=str(error)),
    OutOfScope: lambda error: _PROBLEMS["agency-out-of-scope"].error(service_id=str(error)),
    UnknownDocumentKind: lambda error: _PROBLEMS["unknown-document-kind"].error(
        service_id=error.service.id, service_fa=error.service.title.fa, kind=error.kind
    ),
    InvalidSubmission: lambda error: validation_error(_field_problems(error.errors)),
    InvalidCorrection: lambda error: _PROBLEMS["invalid-correction"].error(_field_problems(error.errors)),
    RateLimited: _rate_limited,
    LookupThrottled: _rate_limited,
    CommandRefused: _command_refused,
    AgencyCommandRefused: _agency_refused,
    DocumentRefused: _document_refused,
}
