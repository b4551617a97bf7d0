"""notify's HTTP routes: what was sent about a request, and how it went (no contact details)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from shared.domain.tracking_code import InvalidTrackingCode, format_for_display, parse_tracking_code
from shared.http import FieldProblem, ProblemError, problem_responses

from .models import Notification
from .service import list_notifications
from .wiring import Notify

router = APIRouter(prefix="/api/v1")

PROBLEM_RESPONSES = problem_responses(404, 422)


class NotificationOut(BaseModel):
    """One notification of a request: which channel, for which status, and whether it went out."""

    channel: str
    status: str
    state: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None


class NotificationsOut(BaseModel):
    """Every notification of one request, oldest first."""

    tracking_code: str
    tracking_code_display: str
    notifications: list[NotificationOut]


def get_notify(request: Request) -> Notify:
    """The wired dependencies of this app."""
    notify: Notify = request.app.state.notify
    return notify


NotifyDep = Annotated[Notify, Depends(get_notify)]


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


@router.get("/notifications/{tracking_code}", responses=PROBLEM_RESPONSES)
async def get_notifications(tracking_code: str, notify: NotifyDep) -> NotificationsOut:
    """The notifications sent (or being sent) about one request."""
    try:
        code = parse_tracking_code(tracking_code)
    except InvalidTrackingCode as error:
        raise ProblemError(
            status=422,
            slug="invalid-tracking-code",
            title_en="This is not a tracking code",
            title_fa="این کد رهگیری معتبر نیست",
            errors=[
                FieldProblem(
                    field="tracking_code",
                    code=error.reason,
                    message_en="A tracking code has 15 digits; please check it and try again.",
                    message_fa="کد رهگیری ۱۵ رقم دارد؛ لطفاً آن را بررسی و دوباره وارد کنید.",
                )
            ],
        ) from None
    rows = await list_notifications(sessions=notify.sessions, tracking_code=code)
    if rows is None:
        raise ProblemError(
            status=404,
            slug="unknown-request",
            title_en="No notifications for this tracking code",
            title_fa="برای این کد رهگیری اعلانی وجود ندارد",
        )
    return NotificationsOut(
        tracking_code=code,
        tracking_code_display=format_for_display(code),
        notifications=[_out(row) for row in rows],
    )
