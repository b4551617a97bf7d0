"""intake's HTTP routes: parse, call a use case, answer (problem+json on every error)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from shared.catalog import Catalog, ServiceDefinition
from shared.domain.tracking_code import TrackingCodeExhausted, format_for_display
from shared.http import FieldProblem, Problem, ProblemError

from .models import ServiceSummary, SubmissionAccepted, SubmissionIn, summarise
from .service import BusUnavailable, UnknownService, submit_request
from .wiring import Intake

router = APIRouter(prefix="/api/v1")

PROBLEM_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}} for status in (404, 422, 503)
}


def get_intake(request: Request) -> Intake:
    """The wired dependencies of this app."""
    intake: Intake = request.app.state.intake
    return intake


IntakeDep = Annotated[Intake, Depends(get_intake)]


def _catalog(intake: Intake) -> Catalog:
    return intake.catalog


def _bus_unavailable() -> ProblemError:
    return ProblemError(
        status=503,
        slug="bus-unavailable",
        title_en="The service desk cannot record requests right now",
        title_fa="میز خدمت در این لحظه نمی‌تواند درخواست را ثبت کند",
        detail_en="Nothing was recorded. Please try again in a few seconds.",
        detail_fa="چیزی ثبت نشد. لطفاً چند ثانیه دیگر دوباره تلاش کنید.",
        headers={"Retry-After": "5"},
    )


def _unknown_service(service_id: str) -> ProblemError:
    return ProblemError(
        status=404,
        slug="unknown-service",
        title_en="No such service",
        title_fa="چنین خدمتی وجود ندارد",
        detail_en=f"The catalog has no service '{service_id}'.",
        detail_fa=f"فهرست خدمات، خدمتی با شناسهٔ «{service_id}» ندارد.",
        errors=[
            FieldProblem(
                field="service_id",
                code="unknown_service",
                message_en="Choose a service from the catalog.",
                message_fa="خدمتی از فهرست خدمات انتخاب کنید.",
            )
        ],
    )


@router.get("/services", response_model=list[ServiceSummary], summary="List the services of the catalog")
async def list_services(intake: IntakeDep) -> list[ServiceSummary]:
    return [summarise(service) for service in _catalog(intake).all()]


@router.get(
    "/services/{service_id}",
    response_model=ServiceDefinition,
    responses=PROBLEM_RESPONSES,
    summary="Everything a citizen needs to know about one service",
)
async def get_service(service_id: str, intake: IntakeDep) -> ServiceDefinition:
    service = _catalog(intake).get(service_id)
    if service is None:
        raise _unknown_service(service_id)
    return service


@router.post(
    "/requests",
    status_code=202,
    response_model=SubmissionAccepted,
    responses=PROBLEM_RESPONSES,
    summary="Submit a request; answered only once Kafka has acknowledged it",
)
async def post_request(submission: SubmissionIn, intake: IntakeDep) -> SubmissionAccepted:
    if not intake.bus.connected.is_set():
        raise _bus_unavailable()
    try:
        outcome = await submit_request(
            catalog=intake.catalog,
            generator=intake.generator,
            publish=intake.publish_submission,
            submission=submission,
            today=date.today(),
            accept_window_s=intake.accept_window_s,
            grace_s=intake.grace_s,
        )
    except UnknownService as error:
        raise _unknown_service(str(error)) from error
    except (BusUnavailable, TrackingCodeExhausted) as error:
        raise _bus_unavailable() from error
    if isinstance(outcome, list):
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
    return SubmissionAccepted(
        tracking_code=outcome.tracking_code,
        tracking_code_display=format_for_display(outcome.tracking_code),
        service_id=outcome.service_id,
        catalog_version=outcome.catalog_version,
    )
