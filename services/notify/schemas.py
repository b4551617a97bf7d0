"""notify's HTTP shapes: the bodies and answers of its internal routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


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


class OneTimeCodeIn(BaseModel):
    """tracking asks for `code` to be texted to the mobile on record of the request `tracking_code`."""

    tracking_code: str = Field(pattern=r"^[0-9]{15}$")
    code: str = Field(pattern=r"^[0-9]{6}$")


class OneTimeCodeOut(BaseModel):
    """Where the code went, masked (the citizen is told which of their numbers to look at)."""

    mobile_hint: str


class ReceiptIn(BaseModel):
    """A gateway's delivery report for one message (Kavenegar-style fields)."""

    messageid: str | int
    localid: str | int | None = None
    status: str = Field(min_length=1, max_length=40)
