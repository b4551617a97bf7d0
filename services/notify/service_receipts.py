"""notify's outcomes: delivery receipts from the SMS gateways, and each outcome relayed to desk.notifications."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from shared.domain.state_machine import RequestState
from shared.events import NotificationOutcome, notification_outcome_id

from .service import NOTIFICATIONS
from .store import Sessions, mark_outcome_published, outcomes_due, record_receipt


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def apply_receipt(*, sessions: Sessions, local_id: str, message_id: str, receipt_status: str) -> str | None:
    """Record a gateway's delivery receipt; returns the notification's new state, or None when nothing changed.

    The gateway names the notification by the `localid` notify sent (its row id); a receipt whose message id
    is not the one recorded for that row (another message, or a forged one) changes nothing. The write is
    conditional on the state read, as a round's record is, so neither overwrites the other.
    """
    if not local_id.isdigit():
        return None
    applied = await record_receipt(
        sessions, notification_id=int(local_id), message_id=message_id, receipt_status=receipt_status
    )
    if applied is None:
        return None
    NOTIFICATIONS.labels(applied.channel, applied.state.value).inc()
    return applied.state.value


async def publish_outcomes(
    *,
    sessions: Sessions,
    publish: Callable[[NotificationOutcome], Awaitable[object]],
    batch: int = 200,
    now: Callable[[], datetime] = _utcnow,
) -> int:
    """Publish each notification's new outcome on desk.notifications, then mark it published (at least once).

    The notification table is its own outbox: a row whose state is an outcome not yet published is published
    and then marked, so a crash in between publishes it again (with the same derived id) rather than never.
    """
    rows = await outcomes_due(sessions, batch=batch)
    for row in rows:
        assert row.id is not None
        await publish(
            NotificationOutcome(
                event_id=notification_outcome_id(row.status_event_id, row.channel, row.state),
                tracking_code=row.tracking_code,
                occurred_at=now(),
                status_event_id=row.status_event_id,
                status=RequestState(row.status),
                channel=row.channel,
                state=row.state,
            )
        )
        await mark_outcome_published(sessions, notification_id=row.id, state=row.state)
    return len(rows)
