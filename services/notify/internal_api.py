"""notify's HTTP routes: what was sent about a request, and how it went (no contact details); identity's sign-in
codes; the SMS gateways' delivery receipts.

Listing a request's notifications is a read of the citizen's data by whoever holds the internal key: each
successful call is recorded on desk.access first, under the applicant's subject digest kept with the contact.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response

from shared.access_audit import AccessLog, AccessNotRecorded, personal_data, service_actor
from shared.domain.tracking_code import InvalidTrackingCode, format_for_display, parse_tracking_code
from shared.events import Purpose, ResourceKind
from shared.http import problem_responses
from shared.problems import check_internal_key, problems_beside

from .schemas import NotificationOut, NotificationsOut, ReceiptIn, SignInCodeIn
from .service import (
    Notification,
    Notify,
    SignInCodeNotSent,
    audit_subject_of,
    list_notifications,
    text_sign_in_code,
)
from .service_receipts import apply_receipt


def get_notify(request: Request) -> Notify:
    """The wired dependencies of this app."""
    notify: Notify = request.app.state.notify
    return notify


NotifyDep = Annotated[Notify, Depends(get_notify)]

# The answers of these routes, each written once in problems.yaml.
_PROBLEMS: Final = problems_beside(__file__)


def _utc(moment: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _out(row: Notification) -> NotificationOut:
    return NotificationOut(
        channel=row.channel,
        status=row.status,
        state=row.state,
        attempts=row.attempts,
        created_at=_utc(row.created_at),
        sent_at=_utc(row.sent_at) if row.sent_at is not None else None,
    )


# --- internal: the desk's own services only (the internal key) ----------------------------------

internal_router = APIRouter(prefix="/internal/v1", include_in_schema=True, tags=["internal"])


def require_internal_key(request: Request) -> None:
    """Only the desk's own services (and operators) hold the internal key; anyone else gets the same 401."""
    check_internal_key(request, request.app.state.settings.internal_key.get_secret_value().encode())


InternalKey = Depends(require_internal_key)

# Whoever holds the internal key (the desk's operators, its services) reads for support; one key names no one
# better until each caller has its own.
NotificationsAccess = Annotated[
    AccessLog, personal_data(ResourceKind.NOTIFICATIONS, Purpose.SUPPORT, service_actor("internal-key-holder"))
]


@internal_router.get(
    "/notifications/{tracking_code}", responses=problem_responses(401, 404, 422), dependencies=[InternalKey]
)
async def get_notifications(tracking_code: str, notify: NotifyDep, access: NotificationsAccess) -> NotificationsOut:
    """The notifications sent (or being sent) about one request: for the desk's operators and tests, with the
    internal key (citizens see them in tracking's lookup, behind their national ID)."""
    try:
        code = parse_tracking_code(tracking_code)
    except InvalidTrackingCode as error:
        raise _PROBLEMS["invalid-tracking-code"].error(reason=error.reason) from None
    rows = await list_notifications(sessions=notify.sessions, tracking_code=code)
    if rows is None:
        raise _PROBLEMS["unknown-request"].error()
    subject = await audit_subject_of(sessions=notify.sessions, tracking_code=code)
    if subject is None:
        # A contact kept before subjects were: the read cannot be attributed to its citizen, so it is refused.
        raise AccessNotRecorded("no subject digest for this request's applicant")
    await access.record(subject=subject, resource=code)
    return NotificationsOut(
        tracking_code=code,
        tracking_code_display=format_for_display(code),
        notifications=[_out(row) for row in rows],
    )


@internal_router.post(
    "/sign-in-codes",
    status_code=202,
    response_class=Response,
    responses=problem_responses(401, 503),
    dependencies=[InternalKey],
    summary="Text identity's sign-in code to a mobile (nothing is stored)",
)
async def post_sign_in_code(body: SignInCodeIn, notify: NotifyDep) -> Response:
    """identity texts its codes through notify's SMS gateways; the mobile and the code are neither stored nor
    logged."""
    try:
        await text_sign_in_code(sms=notify.sms, mobile=body.mobile, code=body.code)
    except SignInCodeNotSent as error:
        raise _PROBLEMS["sms-unavailable"].error() from error
    return Response(status_code=202)


# --- delivery receipts from the SMS gateways ------------------------------------------------------


@internal_router.post(
    "/sms/receipts", status_code=204, responses=problem_responses(401), summary="An SMS gateway's delivery receipt"
)
async def post_sms_receipt(body: ReceiptIn, request: Request, notify: NotifyDep, token: str = "") -> None:
    """Move the notification to delivered or failed; late, repeated or out-of-order receipts change nothing."""
    expected = request.app.state.settings.receipt_token.get_secret_value()
    if not hmac.compare_digest(token, expected):
        raise _PROBLEMS["receipt-unauthenticated"].error()
    await apply_receipt(
        sessions=notify.sessions,
        local_id=str(body.localid or ""),
        message_id=str(body.messageid),
        receipt_status=body.status,
    )
