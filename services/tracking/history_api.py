"""tracking's history routes: a one-time code by SMS, a short-lived token for it, then the citizen's requests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.domain.identity import InvalidNationalId, normalize_national_id
from shared.http import ProblemError, problem_responses, rate_limited

from .consumers import Tracking
from .schemas import CodeRequestIn, CodeRequestOut, HistoryOut, TokenIn, TokenOut, status_of
from .service import national_id_digest
from .service_history import HistoryUnavailable, latest_request, requests_of

router = APIRouter(prefix="/api/v1/tracking/history")
_bearer = HTTPBearer(auto_error=False)


def _unavailable() -> ProblemError:
    return ProblemError(
        status=503,
        slug="history-unavailable",
        title_en="Your history cannot be opened right now",
        title_fa="سابقهٔ درخواست‌ها در این لحظه در دسترس نیست",
        detail_en="Nothing was sent. Please try again in a minute.",
        detail_fa="چیزی ارسال نشد. لطفاً یک دقیقهٔ دیگر دوباره تلاش کنید.",
        headers={"Retry-After": "60"},
    )


def _not_signed_in(detail_en: str, detail_fa: str) -> ProblemError:
    return ProblemError(
        status=401,
        slug="history-unauthenticated",
        title_en="Please prove who you are first",
        title_fa="ابتدا هویت خود را تأیید کنید",
        detail_en=detail_en,
        detail_fa=detail_fa,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _subject(deps: Tracking, national_id: str) -> str:
    try:
        return national_id_digest(normalize_national_id(national_id), deps.lookup_key)
    except InvalidNationalId:
        # Counted and answered like any other: a malformed ID reveals nothing either.
        return national_id_digest(national_id.strip(), deps.lookup_key)


@router.post(
    "/one-time-code",
    status_code=202,
    response_model=CodeRequestOut,
    responses=problem_responses(429, 503),
    summary="Text a one-time code to the mobile on record of your latest request",
)
async def post_one_time_code(body: CodeRequestIn, request: Request) -> CodeRequestOut:
    deps: Tracking = request.app.state.tracking
    subject = _subject(deps, body.national_id)
    decision = await deps.code_throttle.hit(
        client=request.client.host if request.client else "unknown", tracking_code=subject
    )
    if not decision.allowed:
        raise rate_limited(decision.retry_after_s)
    latest = await latest_request(deps.sessions, subject)
    if latest is not None:
        try:
            code = await deps.codes.issue(subject)
            try:
                await deps.code_sender.send(tracking_code=latest, code=code)
            except HistoryUnavailable:
                await deps.codes.withdraw(subject)
                raise
        except HistoryUnavailable as error:
            raise _unavailable() from error
    return CodeRequestOut(expires_in_s=deps.codes.ttl_s)


@router.post(
    "/token",
    response_model=TokenOut,
    responses=problem_responses(401, 503),
    summary="Trade the one-time code for a short-lived token",
)
async def post_token(body: TokenIn, request: Request) -> TokenOut:
    deps: Tracking = request.app.state.tracking
    subject = _subject(deps, body.national_id)
    code = body.code.translate(str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789"))
    try:
        redeemed = await deps.codes.redeem(subject, code)
    except HistoryUnavailable as error:
        raise _unavailable() from error
    if not redeemed:
        raise _not_signed_in(
            "The code is wrong, used or expired; ask for a new one.",
            "کد نادرست، استفاده‌شده یا منقضی است؛ کد تازه بخواهید.",
        )
    return TokenOut(token=deps.tokens.issue(subject), expires_in_s=deps.tokens.ttl_s)


@router.get(
    "",
    response_model=HistoryOut,
    responses=problem_responses(401),
    summary="Your requests and their results (Authorization: Bearer <token>)",
)
async def get_history(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> HistoryOut:
    deps: Tracking = request.app.state.tracking
    subject = deps.tokens.subject(credentials.credentials) if credentials else None
    if subject is None:
        raise _not_signed_in(
            "Send the token from /history/token as a Bearer token; it lasts 15 minutes.",
            "توکنی را که هنگام ورود گرفته‌اید در سرآیند Authorization با پیشوند Bearer بفرستید؛ ۱۵ دقیقه اعتبار دارد.",
        )
    return HistoryOut(requests=[status_of(record, []) for record in await requests_of(deps.sessions, subject)])
