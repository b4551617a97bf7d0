"""notify's outcomes kept by tracking on both databases it supports, SQLite and PostgreSQL (a real server):
duplicated, reordered and concurrent outcomes leave each notification at its final state, once, and the
citizen's answer shows them."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from services.tracking.domain_folding import status_change_id
from services.tracking.schemas import status_of
from services.tracking.service import Sessions, lookup, notifications_of, record_notification
from services.tracking.store import NotificationRecord
from services.tracking.store_migrations import migrate
from shared.db import make_engine, make_sessionmaker
from shared.domain.state_machine import RequestState
from shared.events import NotificationOutcome, notification_outcome_id
from tests.unit.test_tracking import CODES, LOOKUP_KEY, NATIONAL_ID, T0, Feed, lifecycle

pytestmark = pytest.mark.asyncio


async def database(url: str) -> tuple[Sessions, AsyncEngine]:
    engine = make_engine(url)
    await migrate(engine)
    return make_sessionmaker(engine), engine


def outcomes_of(code: str, change: str, channel: str, final: str, minute: int) -> list[NotificationOutcome]:
    """One notification's outcomes as notify publishes them: `sent`, then its one final state (if any)."""
    states = ["sent"] if final == "sent" else ["sent", final]
    return [
        NotificationOutcome(
            event_id=notification_outcome_id(change, channel, state),
            tracking_code=code,
            occurred_at=T0 + timedelta(minutes=minute + step),
            status_event_id=change,
            status=RequestState.APPROVED,
            channel=channel,
            state=state,
        )
        for step, state in enumerate(states)
    ]


async def stored(sessions: Sessions) -> dict[tuple[str, str], tuple[str, str]]:
    async with sessions() as session:
        rows = (await session.exec(select(NotificationRecord))).all()
    return {(row.status_event_id, row.channel): (row.state, row.tracking_code) for row in rows}


@pytest.mark.parametrize("seed", [1, 2])
async def test_duplicated_reordered_and_concurrent_outcomes_leave_each_notification_final(
    database_url: str, seed: int
) -> None:
    rng = random.Random(seed)
    sessions, engine = await database(database_url)
    try:
        expected: dict[tuple[str, str], tuple[str, str]] = {}
        published: list[NotificationOutcome] = []
        for number in range(30):
            code = CODES.next_code()
            for channel in ("sms", "email"):
                change = f"change-{seed}-{number}"
                final = rng.choice(["sent", "delivered", "failed"])
                expected[(change, channel)] = (final, code)
                outcomes = outcomes_of(code, change, channel, final, minute=number)
                published += outcomes * rng.randint(1, 3)  # redelivered, possibly more than once
        rng.shuffle(published)  # a receipt's outcome often overtakes its `sent`

        changed = 0
        # A few at once: two replicas during a rebalance, or a redelivery racing the first delivery.
        for start in range(0, len(published), 8):
            results = await asyncio.gather(
                *(record_notification(sessions=sessions, outcome=item) for item in published[start : start + 8])
            )
            changed += sum(results)
        assert await stored(sessions) == expected

        # Each notification changed once for its first outcome and at most once more (sent, then its receipt).
        finals = sum(1 for state, _ in expected.values() if state != "sent")
        assert len(expected) <= changed <= len(expected) + finals

        # Everything again, in another order: nothing moves, nothing is reported as changed.
        rng.shuffle(published)
        assert not any([await record_notification(sessions=sessions, outcome=item) for item in published])
        assert await stored(sessions) == expected
    finally:
        await engine.dispose()


async def test_the_answer_shows_the_notifications_of_the_request_only(database_url: str) -> None:
    sessions, engine = await database(database_url)
    try:
        feed = Feed(sessions)
        events = lifecycle()
        await feed.fold(*events)
        code = events[0].tracking_code
        approved = status_change_id(events[2].event_id)
        # The receipt's outcome first, then the `sent` it overtook, then the receipt again.
        delivered, sent = reversed(outcomes_of(code, approved, "sms", "delivered", minute=10))
        for item in (delivered, sent, delivered):
            await record_notification(sessions=sessions, outcome=item)
        for item in outcomes_of(CODES.next_code(), "another-change", "sms", "failed", minute=10):
            await record_notification(sessions=sessions, outcome=item)

        found = await lookup(sessions=sessions, tracking_code=code, national_id=NATIONAL_ID, lookup_key=LOOKUP_KEY)
        assert found is not None
        answer = status_of(*found, await notifications_of(sessions=sessions, tracking_code=code))
        [shown] = answer.notifications
        assert (shown.status, shown.channel, shown.state) == ("APPROVED", "sms", "delivered")
        assert shown.status_changed_at == events[2].occurred_at
        assert shown.occurred_at == delivered.occurred_at and shown.occurred_at.tzinfo is not None
        assert shown.detail_en == "The SMS about the request becoming “approved” reached your phone."
    finally:
        await engine.dispose()
