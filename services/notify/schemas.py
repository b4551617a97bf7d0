"""notify's HTTP shapes: the bodies and answers of its internal routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


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


class SignInCodeIn(BaseModel):
    """identity asks for its sign-in `code` to be texted to `mobile` (the registry tied it to the citizen)."""

    model_config = ConfigDict(extra="forbid")

    mobile: str = Field(pattern=r"^09[0-9]{9}$")
    code: str = Field(pattern=r"^[0-9]{6}$")


class ReceiptIn(BaseModel):
    """A gateway's delivery report for one message (Kavenegar-style fields)."""

    messageid: str | int
    localid: str | int | None = None
    status: str = Field(min_length=1, max_length=40)
