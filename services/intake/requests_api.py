"""intake's submission route: parse, submit once per Idempotency-Key, answer (failures: problems_api.py)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from shared.domain.tracking_code import format_for_display
from shared.http import problem_responses
from shared.service_kit import state_dependency

from .schemas import SubmissionAccepted, SubmissionIn
from .service import Intake, submit_once

router = APIRouter(prefix="/api/v1")

IntakeDep = Annotated[Intake, Depends(state_dependency("intake", Intake))]

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
    accepted = await submit_once(
        intake=intake,
        submission=submission,
        client=request.client.host if request.client else "unknown",
        idempotency_key=idempotency_key,
        today=date.today(),
    )
    return SubmissionAccepted(
        tracking_code=accepted.tracking_code,
        tracking_code_display=format_for_display(accepted.tracking_code),
        service_id=accepted.service_id,
        catalog_version=accepted.catalog_version,
    )
