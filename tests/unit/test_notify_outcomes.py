"""Notification outcomes on desk.notifications: each new outcome once (the table is its own outbox), the
delivered receipt after the sent one, nothing for a notification still being sent, again after a failure."""

from __future__ import annotations

import pytest

from services.notify.service_receipts import apply_receipt, publish_outcomes
from services.notify.store import Notification, Sessions
from shared.events import NotificationOutcome, notification_outcome_id


@pytest.fixture
def sessions(notify_sessions: Sessions) -> Sessions:
    return notify_sessions


class Published(list[NotificationOutcome]):
    failing: bool = False

    async def __call__(self, event: NotificationOutcome) -> None:
        if self.failing:
            raise ConnectionError("kafka is away")
        self.append(event)


async def add(sessions: Sessions, state: str, event_id: str) -> int:
    async with sessions() as session:
        row = Notification(
            status_event_id=event_id, channel="sms", tracking_code="1" * 15, status="APPROVED", state=state
        )
        row.outcome_due = state != "created"  # as record_round and apply_receipt set it
        row.provider_message_id = "100000001"
        session.add(row)
        await session.commit()
        assert row.id is not None
        return row.id


async def test_each_outcome_is_published_once_and_a_receipt_adds_its_own(sessions: Sessions) -> None:
    sent_id = await add(sessions, "sent", "e-1")
    await add(sessions, "created", "e-2")  # still being sent: nothing to say yet
    published = Published()
    assert await publish_outcomes(sessions=sessions, publish=published) == 1
    assert await publish_outcomes(sessions=sessions, publish=published) == 0
    [sent] = published
    assert (sent.state, sent.channel, sent.status_event_id) == ("sent", "sms", "e-1")
    assert sent.event_id == notification_outcome_id("e-1", "sms", "sent")

    await apply_receipt(sessions=sessions, local_id=str(sent_id), message_id="100000001", receipt_status="delivered")
    assert await publish_outcomes(sessions=sessions, publish=published) == 1
    assert [event.state for event in published] == ["sent", "delivered"]


async def test_an_outcome_kafka_did_not_take_is_published_next_round(sessions: Sessions) -> None:
    await add(sessions, "failed", "e-3")
    published = Published()
    published.failing = True
    with pytest.raises(ConnectionError):
        await publish_outcomes(sessions=sessions, publish=published)
    published.failing = False
    assert await publish_outcomes(sessions=sessions, publish=published) == 1
    assert published[0].state == "failed"
