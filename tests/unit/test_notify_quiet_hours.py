"""Quiet hours (Tehran's clock, injectable): an SMS that can wait is held and released when they end, an urgent
one goes at once, email is never held, and neither redelivery nor two sweepers send a held SMS twice; the same
sweeper sends what a crashed sender recorded and left unsent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta

import pytest

from services.notify.adapters import EmailSender, SmsGateway
from services.notify.adapters_templates import Renderer
from services.notify.domain import QuietHours, parse_quiet_hours
from services.notify.service import notify_status_change, record_contact
from services.notify.service_sweeper import sweep
from services.notify.store import Notification, Sessions
from shared.domain.state_machine import RequestState
from shared.events import StatusChanged
from tests.unit.test_notify import FakeEmail, FakeSms, new_code, notifications, status_changed, submitted

QUIET = QuietHours(time(22, 0), time(7, 0))


@pytest.fixture
def sessions(notify_sessions: Sessions) -> Sessions:
    return notify_sessions


# 23:30 in Tehran (UTC+03:30) on 2026-11-28, and the 07:00 the hold ends the next morning.
LATE_EVENING = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)
MORNING = datetime(2026, 11, 29, 3, 30, tzinfo=UTC)


def test_the_window_crosses_midnight_on_tehrans_clock() -> None:
    assert QUIET.release_at(LATE_EVENING) == MORNING
    assert QUIET.release_at(datetime(2026, 11, 29, 1, 0, tzinfo=UTC)) == MORNING  # 04:30 Tehran
    assert QUIET.release_at(MORNING) is None  # 07:00 sharp: no longer quiet
    assert QUIET.release_at(datetime(2026, 11, 28, 10, 0, tzinfo=UTC)) is None  # 13:30
    day = QuietHours(time(13, 0), time(14, 0))
    assert day.release_at(datetime(2026, 11, 28, 9, 45, tzinfo=UTC)) == datetime(2026, 11, 28, 10, 30, tzinfo=UTC)


def test_quiet_hours_are_read_from_settings_text() -> None:
    assert parse_quiet_hours("") is None
    assert parse_quiet_hours("22:00-07:00") == QUIET
    for bad in ("22:00", "25:00-07:00", "07:00-07:00"):
        with pytest.raises(ValueError):
            parse_quiet_hours(bad)


async def tell(
    sessions: Sessions, renderer: Renderer, sms: SmsGateway, email: EmailSender, event: StatusChanged, at: datetime
) -> list[str]:
    """Tell of a status change at the given time, under the quiet hours of 22:00 to 07:00."""
    return await notify_status_change(
        sessions=sessions,
        event=event,
        sms=sms,
        email=email,
        renderer=renderer,
        quiet=QUIET,
        now=lambda: at,
    )


async def test_a_late_sms_waits_for_the_morning_and_goes_once(sessions: Sessions, renderer: Renderer) -> None:
    sms, email = FakeSms(), FakeEmail()
    code = new_code()
    await record_contact(sessions=sessions, event=submitted(code))
    approved = status_changed(code, RequestState.APPROVED)

    assert await tell(sessions, renderer, sms, email, approved, LATE_EVENING) == ["email"]
    assert sms.sent == [] and len(email.sent) == 1  # email is not held: nobody's phone rings for it
    [held] = [row for row in await notifications(sessions, code) if row.channel == "sms"]
    assert held.state == "created" and held.not_before == MORNING and held.body
    # A redelivery of the same StatusChanged during the night changes nothing.
    assert await tell(sessions, renderer, sms, email, approved, LATE_EVENING + timedelta(hours=1)) == []

    assert await sweep(sessions=sessions, sms=sms, email=email, now=lambda: MORNING - timedelta(seconds=1)) == 0
    assert await sweep(sessions=sessions, sms=sms, email=email, now=lambda: MORNING) == 1
    assert len(sms.sent) == 1 and sms.sent[0]["message"] == held.body
    assert await sweep(sessions=sessions, sms=sms, email=email, now=lambda: MORNING + timedelta(hours=1)) == 0
    [sent] = [row for row in await notifications(sessions, code) if row.channel == "sms"]
    assert sent.state == "sent" and sent.lease_until is None


async def test_what_the_citizen_must_act_on_is_not_held(sessions: Sessions, renderer: Renderer) -> None:
    sms, email = FakeSms(), FakeEmail()
    code = new_code()
    await record_contact(sessions=sessions, event=submitted(code))
    correction = status_changed(code, RequestState.NEEDS_CORRECTION, reason_fa="مدرک ناخوانا", reason_en="unreadable")
    assert sorted(await tell(sessions, renderer, sms, email, correction, LATE_EVENING)) == ["email", "sms"]
    assert len(sms.sent) == 1


async def test_two_sweepers_release_a_held_sms_once(sessions: Sessions, renderer: Renderer) -> None:
    sms, email = FakeSms(), FakeEmail()
    for _ in range(5):
        code = new_code()
        await record_contact(sessions=sessions, event=submitted(code, email=None))
        await tell(sessions, renderer, sms, email, status_changed(code, RequestState.APPROVED), LATE_EVENING)
    sweeps = (sweep(sessions=sessions, sms=sms, email=email, now=lambda: MORNING) for _ in range(2))
    counts = await asyncio.gather(*sweeps)
    assert sum(counts) == 5 and len(sms.sent) == 5


async def test_a_released_sms_that_fails_is_held_again(sessions: Sessions, renderer: Renderer) -> None:
    from services.notify.adapters import SmsSendError
    from services.notify.service import SendPolicy

    sms, email = FakeSms(), FakeEmail()
    code = new_code()
    await record_contact(sessions=sessions, event=submitted(code, email=None))
    await tell(sessions, renderer, sms, email, status_changed(code, RequestState.APPROVED), LATE_EVENING)
    sms.failures = [SmsSendError("503", retryable=True)]
    policy = SendPolicy(tries_per_delivery=1, attempt_budget=5, first_wait_s=0, max_wait_s=0)
    assert await sweep(sessions=sessions, sms=sms, email=email, policy=policy, now=lambda: MORNING) == 0
    [row] = await notifications(sessions, code)
    assert row.state == "created" and row.not_before is not None and row.not_before > MORNING
    later = row.not_before
    assert await sweep(sessions=sessions, sms=sms, email=email, policy=policy, now=lambda: later) == 1
    assert isinstance(row, Notification)
