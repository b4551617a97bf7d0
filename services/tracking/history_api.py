"""tracking's history routes: a one-time code by SMS, a short-lived token for it, then the citizen's requests.

Reading the history is recorded on desk.access first, under the subject digest the token carries (tracking holds
no national ID to digest when the token comes back).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.access_audit import AccessLog, personal_data
from shared.domain.identity import InvalidNationalId, normalize_national_id
from shared.events import Purpose, ResourceKind
from shared.http import problem_responses
from shared.problems import ProblemSpec, rate_limited, unavailable

from .consumers import Tracking
from .schemas import CodeRequestIn, CodeRequestOut, HistoryOut, TokenIn, TokenOut, status_of
from .service import national_id_digest
from .service_history import HistoryUnavailable, latest_request, requests_of

router = APIRouter(prefix="/api/v1/tracking/history")
_bearer = HTTPBearer(auto_error=False)


_UNAVAILABLE = unavailable(
    "history-unavailable",
    "Your history cannot be opened right now",
    "سابقهٔ درخواست‌ها در این لحظه در دسترس نیست",
    detail_en="Nothing was sent. Please try again in a minute.",
    detail_fa="چیزی ارسال نشد. لطفاً یک دقیقهٔ دیگر دوباره تلاش کنید.",
    retry_after_s=60,
)


_WRONG_CODE = ProblemSpec(
    status=401,
    slug="history-unauthenticated",
    title_en="Please prove who you are first",
    title_fa="ابتدا هویت خود را تأیید کنید",
    detail_en="The code is wrong, used or expired; ask for a new one.",
    detail_fa="کد نادرست، استفاده‌شده یا منقضی است؛ کد تازه بخواهید.",
    headers={"WWW-Authenticate": "Bearer"},
)
# The same refusal, for a missing or stale token rather than a wrong code.
_NO_TOKEN = dataclasses.replace(
    _WRONG_CODE,
    detail_en="Send the token from /history/token as a Bearer token; it lasts 15 minutes.",
    detail_fa="توکنی را که هنگام ورود گرفته‌اید در سرآیند Authorization با پیشوند Bearer بفرستید؛ ۱۵ دقیقه اعتبار دارد.",
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
            raise _UNAVAILABLE.error() from error
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
        raise _UNAVAILABLE.error() from error
    if not redeemed:
        raise _WRONG_CODE.error()
    # A code was issued for this ID, so it is a valid one (an invalid ID never has requests).
    audit_subject = request.app.state.access_recorder.subject_of(body.national_id)
    return TokenOut(token=deps.tokens.issue(subject, audit_subject=audit_subject), expires_in_s=deps.tokens.ttl_s)


@router.get(
    "",
    response_model=HistoryOut,
    responses=problem_responses(401),
    summary="Your requests and their results (Authorization: Bearer <token>)",
)
async def get_history(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access: Annotated[AccessLog, personal_data(ResourceKind.HISTORY, Purpose.FOLLOW_UP)],
) -> HistoryOut:
    deps: Tracking = request.app.state.tracking
    token = credentials.credentials if credentials else ""
    subject, audit_subject = deps.tokens.subject(token), deps.tokens.audit_subject(token)
    if subject is None or audit_subject is None:
        raise _NO_TOKEN.error()
    history = HistoryOut(requests=[status_of(record, []) for record in await requests_of(deps.sessions, subject)])
    await access.record(subject=audit_subject, resource="history")
    return history
