"""notify's sweeper: sends what was recorded but not sent (SMS held for the quiet hours, rows a crash left)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .adapters import EmailSender, SmsGateway
from .domain import NotificationState
from .service import WENT_OUT, SendPolicy, deliver, sender
from .store import Sessions, due_for_sweep, find_contact, release_lease

log = logging.getLogger(__name__)

# A swept notification that failed with budget left waits this long for the next sweep.
RETRY_HELD_AFTER_S = 60
DEFAULT_POLICY = SendPolicy()


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def sweep(
    *,
    sessions: Sessions,
    sms: SmsGateway,
    email: EmailSender,
    policy: SendPolicy = DEFAULT_POLICY,
    now: Callable[[], datetime] = _utcnow,
    batch: int = 200,
) -> int:
    """Send what was recorded but not sent: SMS held for the quiet hours once they end, and rows a crashed
    sender left `created` (older than `policy.stale_after_s`, with no live lease). Returns how many went out.

    A row whose round fails with budget left waits `RETRY_HELD_AFTER_S` for the next sweep.
    """
    moment = now()
    stale_before = moment - timedelta(seconds=policy.stale_after_s)
    due = await due_for_sweep(sessions, moment=moment, stale_before=stale_before, batch=batch)
    sent = 0
    for row in due:
        contact = await find_contact(sessions, row.tracking_code)
        if row.id is None or row.body is None or contact is None:
            continue  # recorded by a build that kept no text: its status change's redelivery sends it
        state = await deliver(sessions, row, sender(row, contact, sms, email), policy, now=now)
        if state in WENT_OUT:
            sent += 1
        elif state is NotificationState.CREATED:
            await release_lease(sessions, row.id, hold_until=moment + timedelta(seconds=RETRY_HELD_AFTER_S))
    if sent:
        log.info("sweeper sent %d notification(s) recorded earlier", sent)
    return sent
