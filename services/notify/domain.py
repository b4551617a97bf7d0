"""notify's rules, pure: which channels a status change goes to, a notification's lifecycle, SMS length."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Final

from shared.domain.jalali import TEHRAN


class Channel(StrEnum):
    """How a citizen is told."""

    SMS = "sms"
    EMAIL = "email"


class NotificationState(StrEnum):
    """Where one notification (one status change on one channel) stands."""

    CREATED = "created"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


# Never sent again from these (a sent one may still learn from its delivery receipt; see after_receipt).
FINAL_STATES: Final = frozenset({NotificationState.SENT, NotificationState.DELIVERED, NotificationState.FAILED})
_DELIVERED_RECEIPTS: Final = frozenset({"delivered"})
_FAILED_RECEIPTS: Final = frozenset({"failed", "undelivered", "expired", "rejected"})


class IllegalTransition(ValueError):
    """A notification in a final state was asked to move; a bug, never retried."""


def channels_for(*, has_email: bool, preferred: frozenset[Channel] | None = None) -> list[Channel]:
    """The channels a status change goes to.

    Without a preference: SMS (every applicant has a mobile) and email when one was given. With one: the
    channels chosen that can be reached; should none be (a preference for email without an address, which
    intake refuses), SMS, so nobody is left untold.
    """
    reachable = [Channel.SMS, Channel.EMAIL] if has_email else [Channel.SMS]
    if preferred is None:
        return reachable
    return [channel for channel in reachable if channel in preferred] or [Channel.SMS]


def can_send(state: str) -> bool:
    """Only a notification that is still `created` may be sent (again); final states are never left."""
    return state == NotificationState.CREATED


def after_receipt(state: str, receipt_status: str) -> NotificationState | None:
    """The state a delivery receipt moves a notification to, or None when it changes nothing.

    Receipts come late, twice or out of order: `delivered` and `failed` are never left; a `delivered`
    receipt may overtake the recording of the send itself (the gateway evidently took the message); a failure
    receipt counts only for a message known to be sent. Unknown receipt statuses change nothing.
    """
    receipt = receipt_status.strip().lower()
    if state in (NotificationState.DELIVERED, NotificationState.FAILED):
        return None
    if receipt in _DELIVERED_RECEIPTS and state in (NotificationState.CREATED, NotificationState.SENT):
        return NotificationState.DELIVERED
    if receipt in _FAILED_RECEIPTS and state == NotificationState.SENT:
        return NotificationState.FAILED
    return None


def is_final(state: str) -> bool:
    """True for `sent`, `delivered` and `failed`: never sent again."""
    return state in FINAL_STATES


def after_attempts(state: str, *, delivered: bool, retryable: bool, attempts: int, budget: int) -> NotificationState:
    """The state after a round of send attempts: sent, failed (permanent or out of budget), or created."""
    if not can_send(state):
        raise IllegalTransition(f"a {state} notification cannot be sent")
    if delivered:
        return NotificationState.SENT
    if not retryable or attempts >= budget:
        return NotificationState.FAILED
    return NotificationState.CREATED


# GSM 03.38: the basic set costs one septet, the extension set two (escape + char); anything else is UCS-2.
_GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION: Final = frozenset("^{}\\[~]|€\f")
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def sms_length(text: str) -> tuple[int, bool]:
    """The billed length of an SMS text and whether it needs UCS-2 (any Persian letter does)."""
    if all(char in _GSM7_BASIC or char in _GSM7_EXTENSION for char in text):
        return sum(2 if char in _GSM7_EXTENSION else 1 for char in text), False
    # UCS-2 counts UTF-16 code units: a character outside the BMP (an emoji) takes two.
    return len(text.encode("utf-16-le")) // 2, True


def sms_parts(text: str) -> int:
    """How many concatenated SMS parts a text is sent (and billed) as."""
    length, ucs2 = sms_length(text)
    single, part = (UCS2_SINGLE, UCS2_PART) if ucs2 else (GSM7_SINGLE, GSM7_PART)
    if length <= single:
        return 1
    return math.ceil(length / part)


@dataclass(frozen=True)
class QuietHours:
    """Hours of Tehran's wall clock when SMS that can wait are held (the window may cross midnight: 22:00–07:00).

    What cannot wait (the citizen must act: a correction, a payment) goes out at once.
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours need a start and an end that differ")

    def _quiet(self, clock: time) -> bool:
        if self.start < self.end:
            return self.start <= clock < self.end
        return clock >= self.start or clock < self.end

    def release_at(self, moment: datetime) -> datetime | None:
        """When an SMS held at `moment` may go (the window's end, in UTC); None when `moment` is not quiet."""
        if moment.tzinfo is None:
            raise ValueError("a naive datetime has no place in time: give it a zone")
        local = moment.astimezone(TEHRAN)
        if not self._quiet(local.time().replace(tzinfo=None)):
            return None
        end = datetime.combine(local.date(), self.end, tzinfo=TEHRAN)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), self.end, tzinfo=TEHRAN)
        return end.astimezone(UTC)


URGENT_STATUSES: Final = frozenset({"NEEDS_CORRECTION", "AWAITING_PAYMENT"})


def parse_quiet_hours(text: str) -> QuietHours | None:
    """`22:00-07:00` (Tehran), or empty for none; ValueError otherwise."""
    if not text.strip():
        return None
    start, separator, end = text.strip().partition("-")
    if not separator:
        raise ValueError(f"quiet hours are written HH:MM-HH:MM, not {text!r}")
    return QuietHours(time.fromisoformat(start.strip()), time.fromisoformat(end.strip()))
