"""intake's HTTP routes: parse, call a use case, answer (problem+json on every error)."""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from shared.domain.tracking_code import TrackingCodeExhausted, format_for_display
from shared.http import FieldProblem, ProblemError, bus_unavailable, problem_responses, rate_limited

from .catalog_api import unknown_service as _unknown_service
from .guards import (
    IdempotencyUnavailable,
    InFlight,
    InvalidIdempotencyKey,
    Mismatch,
    Replay,
    fingerprint,
)
from .models import SubmissionAccepted, SubmissionIn
from .service import BusUnavailable, DocumentStoreUnavailable, UnknownService, submit_request
from .wiring import Intake

router = APIRouter(prefix="/api/v1")
log = logging.getLogger(__name__)


def get_intake(request: Request) -> Intake:
    """The wired dependencies of this app."""
    intake: Intake = request.app.state.intake
    return intake


IntakeDep = Annotated[Intake, Depends(get_intake)]


def _bus_unavailable() -> ProblemError:
    return bus_unavailable()


def _idempotency_problem(outcome: Mismatch | InFlight | None) -> ProblemError:
    if isinstance(outcome, Mismatch):
        return ProblemError(
            status=422,
            slug="idempotency-key-reused",
            title_en="This Idempotency-Key was used for a different request",
            title_fa="این کلید یکتایی پیش‌تر برای درخواست دیگری به کار رفته است",
            detail_en="Send a new Idempotency-Key for a new request; reuse a key only to retry the same body.",
            detail_fa="برای درخواست تازه کلید تازه بفرستید؛ کلید را فقط برای تکرار همان درخواست به کار ببرید.",
            errors=[
                FieldProblem(
                    field="Idempotency-Key",
                    code="idempotency_key_reused",
                    message_en="This key belongs to another request body.",
                    message_fa="این کلید متعلق به درخواست دیگری است.",
                )
            ],
        )
    if isinstance(outcome, InFlight):
        return ProblemError(
            status=409,
            slug="idempotency-key-in-progress",
            title_en="The first attempt with this Idempotency-Key is still being recorded",
            title_fa="درخواست نخست با این کلید یکتایی هنوز در حال ثبت است",
            detail_en="Retry in a moment to get its tracking code.",
            detail_fa="چند لحظه بعد دوباره بفرستید تا کد رهگیری آن را بگیرید.",
            headers={"Retry-After": "2"},
        )
    return ProblemError(
        status=422,
        slug="idempotency-key-invalid",
        title_en="The Idempotency-Key header is not valid",
        title_fa="سرآیند کلید یکتایی (Idempotency-Key) معتبر نیست",
        detail_en="Use 1 to 128 printable ASCII characters, for example a UUID.",
        detail_fa="از ۱ تا ۱۲۸ نویسهٔ اسکی چاپ‌پذیر استفاده کنید، مثلاً یک شناسهٔ یکتای جهانی.",
        errors=[
            FieldProblem(
                field="Idempotency-Key",
                code="idempotency_key_invalid",
                message_en="1 to 128 printable ASCII characters.",
                message_fa="۱ تا ۱۲۸ نویسهٔ اسکی چاپ‌پذیر.",
            )
        ],
    )


def _idempotency_unavailable() -> ProblemError:
    # Without Redis a retry cannot be told from a new request: refuse rather than risk a duplicate.
    return ProblemError(
        status=503,
        slug="idempotency-unavailable",
        title_en="Requests with an Idempotency-Key cannot be recorded right now",
        title_fa="درخواست‌های دارای کلید یکتایی در این لحظه ثبت نمی‌شوند",
        detail_en="Nothing was recorded. Please try again in a few seconds.",
        detail_fa="چیزی ثبت نشد. لطفاً چند ثانیه دیگر دوباره تلاش کنید.",
        headers={"Retry-After": "5"},
    )


def _accepted(*, tracking_code: str, service_id: str, catalog_version: int) -> SubmissionAccepted:
    return SubmissionAccepted(
        tracking_code=tracking_code,
        tracking_code_display=format_for_display(tracking_code),
        service_id=service_id,
        catalog_version=catalog_version,
    )


SUBMISSION_RESPONSES = problem_responses(404, 409, 422, 429, 503)
for _status in (409, 429, 503):
    SUBMISSION_RESPONSES[_status]["headers"] = {
        "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}
    }


@router.post(
    "/requests",
    status_code=202,
    response_model=SubmissionAccepted,
    responses=SUBMISSION_RESPONSES,
    summary="Submit a request; answered only once Kafka has acknowledged it",
    description=(
        "Send an `Idempotency-Key` (e.g. a UUID) to retry safely: the same key with the same body returns the "
        "same tracking code; the same key with another body is refused. Documents are uploaded first with "
        "`POST /api/v1/documents` and referenced here by kind → document_id."
    ),
)
async def post_request(
    submission: SubmissionIn,
    request: Request,
    intake: IntakeDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
) -> SubmissionAccepted:
    decision = await intake.rate_limits.hit(
        client=request.client.host if request.client else "unknown", national_id=submission.applicant.national_id
    )
    if not decision.allowed:
        raise rate_limited(decision.retry_after_s)
    if not intake.bus.connected.is_set():
        raise _bus_unavailable()

    claim: str | None = None
    if idempotency_key is not None:
        claim = fingerprint(submission.model_dump(mode="json"))
        try:
            began = await intake.idempotency.begin(idempotency_key, claim)
        except InvalidIdempotencyKey as error:
            raise _idempotency_problem(None) from error
        except IdempotencyUnavailable as error:
            raise _idempotency_unavailable() from error
        if isinstance(began, Replay):
            service = intake.catalog.get(submission.service_id)
            return _accepted(
                tracking_code=began.tracking_code,
                service_id=submission.service_id,
                catalog_version=began.catalog_version or (service.version if service else 1),
            )
        if isinstance(began, Mismatch | InFlight):
            raise _idempotency_problem(began)

    try:
        outcome = await submit_request(
            catalog=intake.catalog,
            generator=intake.generator,
            publish=intake.publish_submission,
            submission=submission,
            store=request.app.state.blob_store,
            today=date.today(),
            accept_window_s=intake.accept_window_s,
            grace_s=intake.grace_s,
        )
    except Exception as error:
        if claim is not None and idempotency_key is not None:
            await _release(intake, idempotency_key, claim)
        if isinstance(error, UnknownService):
            raise _unknown_service(str(error)) from error
        if isinstance(error, BusUnavailable | TrackingCodeExhausted | DocumentStoreUnavailable):
            raise _bus_unavailable() from error
        raise
    if isinstance(outcome, list):
        if claim is not None and idempotency_key is not None:
            await _release(intake, idempotency_key, claim)
        raise ProblemError(
            status=422,
            slug="validation",
            title_en="The request is not valid",
            title_fa="درخواست معتبر نیست",
            detail_en="One or more fields are missing or malformed.",
            detail_fa="یک یا چند مورد وارد نشده یا نادرست است.",
            errors=[
                FieldProblem(field=e.field, code=e.code, message_en=e.message_en, message_fa=e.message_fa)
                for e in outcome
            ],
        )
    if claim is not None and idempotency_key is not None:
        try:
            await intake.idempotency.complete(
                idempotency_key, claim, outcome.tracking_code, catalog_version=outcome.catalog_version
            )
        except IdempotencyUnavailable:
            # The request was accepted all the same; its pending claim expires and a retry is refused meanwhile.
            log.warning("could not complete idempotency key for %s", outcome.tracking_code)
    return _accepted(
        tracking_code=outcome.tracking_code,
        service_id=outcome.service_id,
        catalog_version=outcome.catalog_version,
    )


async def _release(intake: Intake, key: str, claim: str) -> None:
    """Free a failed attempt's claim so the citizen can retry with the same key (it also expires by itself)."""
    try:
        await intake.idempotency.abandon(key, claim)
    except IdempotencyUnavailable:
        log.warning("could not release an idempotency key; it expires by itself")
