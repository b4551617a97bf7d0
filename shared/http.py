"""HTTP edges every service shares: RFC 9457 problem+json errors (Persian and English), health and metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.domain.digits import to_persian_digits

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://khedmat.ir/problems/"

HTTP_REQUESTS = Counter(
    "khedmat_http_requests_total", "HTTP requests by route and status class", ["service", "route", "method", "status"]
)
HTTP_LATENCY = Histogram("khedmat_http_request_seconds", "HTTP request latency", ["service", "route", "method"])


class FieldProblem(BaseModel):
    """One field at fault, with a message a citizen can act on in either language."""

    field: str
    code: str
    message_en: str
    message_fa: str


class Problem(BaseModel):
    """An RFC 9457 problem document, extended with Persian text and the fields at fault."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    title_fa: str
    detail_fa: str | None = None
    errors: list[FieldProblem] = Field(default_factory=list)


class ProblemError(Exception):
    """Raise from a route to answer with problem+json."""

    def __init__(
        self,
        *,
        status: int,
        slug: str,
        title_en: str,
        title_fa: str,
        detail_en: str | None = None,
        detail_fa: str | None = None,
        errors: list[FieldProblem] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {slug}: {title_en}")
        self.status = status
        self.slug = slug
        self.title_en = title_en
        self.title_fa = title_fa
        self.detail_en = detail_en
        self.detail_fa = detail_fa
        self.errors = errors or []
        self.headers = dict(headers or {})

    def to_problem(self, instance: str | None) -> Problem:
        """The problem document for this error."""
        return Problem(
            type=PROBLEM_TYPE_BASE + self.slug,
            title=self.title_en,
            status=self.status,
            detail=self.detail_en,
            instance=instance,
            title_fa=self.title_fa,
            detail_fa=self.detail_fa,
            errors=self.errors,
        )


def problem_response(problem: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A problem+json response."""
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=dict(headers or {}),
    )


def _field_path(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def fa_number(value: object) -> str:
    """A number for a Persian text, in Persian digits (2.0 is written ۲)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return to_persian_digits(str(value))


# Persian for each rule pydantic applies, naming the same rule as its English message; {name} is from ctx.
_VALIDATION_FA: dict[str, str] = {
    "missing": "این مورد الزامی است.",
    "extra_forbidden": "این مورد شناخته‌شده نیست و پذیرفته نمی‌شود.",
    "string_type": "این مقدار باید متن باشد.",
    "string_too_short": "این مقدار دست‌کم {min_length} نویسه است.",
    "string_too_long": "این مقدار حداکثر {max_length} نویسه است.",
    "string_pattern_mismatch": "قالب این مقدار درست نیست.",
    "string_unicode": "این مقدار باید متن یونی‌کد معتبر باشد.",
    "too_short": "این فهرست دست‌کم {min_length} مورد دارد.",
    "too_long": "این فهرست حداکثر {max_length} مورد دارد.",
    "int_type": "این مقدار باید عدد صحیح باشد.",
    "int_parsing": "این مقدار باید عدد صحیح باشد.",
    "int_from_float": "این مقدار باید عدد صحیح و بدون بخش اعشاری باشد.",
    "float_type": "این مقدار باید عدد باشد.",
    "float_parsing": "این مقدار باید عدد باشد.",
    "bool_type": "این مقدار باید درست یا نادرست باشد.",
    "bool_parsing": "این مقدار باید درست یا نادرست باشد.",
    "greater_than": "این مقدار باید بیشتر از {gt} باشد.",
    "greater_than_equal": "این مقدار باید دست‌کم {ge} باشد.",
    "less_than": "این مقدار باید کمتر از {lt} باشد.",
    "less_than_equal": "این مقدار باید حداکثر {le} باشد.",
    "literal_error": "این مقدار باید یکی از مقدارهای مجاز باشد.",
    "enum": "این مقدار باید یکی از مقدارهای مجاز باشد.",
    "dict_type": "این مقدار باید یک شیء با نام و مقدار باشد.",
    "model_type": "این مقدار باید یک شیء با نام و مقدار باشد.",
    "model_attributes_type": "این مقدار باید یک شیء با نام و مقدار باشد.",
    "list_type": "این مقدار باید فهرست باشد.",
    "url_parsing": "این مقدار نشانی اینترنتی معتبر نیست.",
    "url_type": "این مقدار نشانی اینترنتی معتبر نیست.",
    "url_scheme": "نشانی اینترنتی باید با طرح مجاز آغاز شود.",
    "url_too_long": "نشانی اینترنتی حداکثر {max_length} نویسه است.",
    "uuid_parsing": "این مقدار شناسهٔ یکتای معتبر نیست.",
    "uuid_type": "این مقدار شناسهٔ یکتای معتبر نیست.",
    "date_parsing": "این مقدار تاریخ معتبر نیست.",
    "date_from_datetime_parsing": "این مقدار تاریخ معتبر نیست.",
    "datetime_parsing": "این مقدار زمان معتبر نیست.",
    "datetime_from_date_parsing": "این مقدار زمان معتبر نیست.",
}
_VALIDATION_FA_FALLBACK = "این مقدار پذیرفته نیست."


def validation_message_fa(error_type: str, ctx: Mapping[str, Any] | None) -> str:
    """The Persian message for one pydantic error: our own rules carry it in ctx, pydantic's are translated."""
    ctx = ctx or {}
    given = ctx.get("message_fa")
    if isinstance(given, str):
        return given
    template = _VALIDATION_FA.get(error_type, _VALIDATION_FA_FALLBACK)
    try:
        return template.format(**{name: fa_number(value) for name, value in ctx.items()})
    except (KeyError, IndexError):
        return _VALIDATION_FA_FALLBACK


def bilingual_value_error(code: str, message_en: str, message_fa: str) -> PydanticCustomError:
    """A validator's refusal with its Persian words, so the 422 says the same rule in both languages."""
    return PydanticCustomError(code, message_en, {"message_fa": message_fa})


def _field_problem(error: Mapping[str, Any]) -> FieldProblem:
    error_type = str(error.get("type", "invalid"))
    location = tuple(error.get("loc", ()))
    if error_type == "json_invalid":
        # pydantic's loc is ("body", <character offset>): the offset is where the JSON breaks, not a field.
        position = location[-1] if location and isinstance(location[-1], int) else None
        where_en = f" (it breaks at character {position})" if position is not None else ""
        where_fa = f" (خطا در نویسهٔ شمارهٔ {fa_number(position)} است)" if position is not None else ""
        return FieldProblem(
            field="body",
            code=error_type,
            message_en=f"The request body is not valid JSON{where_en}.",
            message_fa=f"بدنهٔ درخواست در قالب جی‌سان معتبر نیست{where_fa}.",
        )
    return FieldProblem(
        field=_field_path(location),
        code=error_type,
        message_en=str(error.get("msg", "invalid value")),
        message_fa=validation_message_fa(error_type, error.get("ctx")),
    )


def validation_error(errors: list[FieldProblem]) -> ProblemError:
    """422 listing the fields at fault: those pydantic refused and those a use case refused answer alike."""
    return ProblemError(
        status=422,
        slug="validation",
        title_en="The request is not valid",
        title_fa="درخواست معتبر نیست",
        detail_en="One or more fields are missing or malformed.",
        detail_fa="یک یا چند مورد وارد نشده یا نادرست است.",
        errors=errors,
    )


def validation_problem(exc: RequestValidationError, instance: str) -> Problem:
    """A 422 problem listing every field pydantic refused, without echoing the submitted values."""
    return validation_error([_field_problem(error) for error in exc.errors()]).to_problem(instance)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error (ours, validation, routing) as problem+json; never a bare 500 for bad input."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.to_problem(request.url.path), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(validation_problem(exc, request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # An exception that knows its own problem (shared/edges.py BodyTooLarge) answers with it.
        own_problem = getattr(exc, "problem", None)
        if callable(own_problem):
            known: ProblemError = own_problem()
            return problem_response(known.to_problem(request.url.path), known.headers)
        titles = {
            400: ("The request body could not be read", "بدنهٔ درخواست خوانا نیست"),
            404: ("Not found", "پیدا نشد"),
            405: ("Method not allowed", "این روش پذیرفته نیست"),
            413: ("The request is too large", "درخواست بیش از حد بزرگ است"),
            415: ("This content type is not accepted", "این نوع محتوا پذیرفته نیست"),
        }
        title_en, title_fa = titles.get(exc.status_code, (str(exc.detail), "خطا"))
        error = ProblemError(
            status=exc.status_code, slug=f"http-{exc.status_code}", title_en=title_en, title_fa=title_fa
        )
        return problem_response(error.to_problem(request.url.path), getattr(exc, "headers", None))


# Every route can meet these whatever it does (unreadable body, bad fields): documented once for the whole app.
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for problem+json answers (schemathesis checks the documented media type)."""
    return {
        status: {
            "model": Problem,
            "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


COMMON_PROBLEM_RESPONSES = problem_responses(400, 413, 422)


Check = Callable[[], Awaitable[bool]]


DEPENDENCY_UP = Gauge(
    "khedmat_dependency_up", "Whether a dependency answered the last readiness probe (1) or not (0)", ["dependency"]
)
# A readiness probe that hangs is a failed one: Kubernetes would time it out anyway, without saying which.
CHECK_TIMEOUT_S = 2.0


def operations_router(
    *, service: str, readiness_checks: Mapping[str, Check], degraded_checks: Mapping[str, Check] | None = None
) -> APIRouter:
    """/healthz (live: the event loop answers), /readyz (ready: every dependency answers), /metrics (Prometheus).

    `degraded_checks` are reported on /readyz and in `khedmat_dependency_up` but do not make the service unready:
    Redis, which every service works without (limits fall back or fail open, caches miss). Gating on it would
    turn a Redis outage into the whole desk leaving the load balancer.
    """
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    async def probe(name: str, check: Check) -> bool:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                up = bool(await check())
        except Exception:
            up = False
        DEPENDENCY_UP.labels(name).set(1 if up else 0)
        return up

    @router.get("/readyz")
    async def readyz() -> Response:
        results = {name: await probe(name, check) for name, check in readiness_checks.items()}
        degraded = [name for name, check in (degraded_checks or {}).items() if not await probe(name, check)]
        ready = all(results.values())
        body = {"ready": ready, "checks": results, "degraded": degraded}
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


class HttpMetricsMiddleware:
    """Counts and times every request by its route template (not its URL: codes would explode the series).

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which wraps every response in an extra task and
    stream and costs a noticeable share of a small request's time.
    """

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(self.service, route, method, f"{status // 100}xx").inc()
            HTTP_LATENCY.labels(self.service, route, method).observe(time.perf_counter() - started)


def install_http_metrics(app: FastAPI, *, service: str) -> None:
    """Add the HTTP rate, error and latency metrics to an app."""
    app.add_middleware(HttpMetricsMiddleware, service=service)
