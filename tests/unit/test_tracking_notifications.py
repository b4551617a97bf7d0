"""tracking's record of notify's outcomes (desk.notifications): which state wins, the record handler, the answer.

Outcomes come twice and out of order; only a step forward counts (sent, then delivered or failed), so every
order of the same outcomes leaves the same row.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from services.tracking.consumers import handle_notification_record
from services.tracking.domain import (
    NOTIFICATION_STATES,
    describe_notification,
    notification_outcome_wins,
    states_overtaken_by,
)
from services.tracking.domain_folding import status_change_id
from services.tracking.schemas import status_of
from services.tracking.service import lookup, notifications_of, record_notification, stored_offsets
from services.tracking.store import LIVE_TABLES, NotificationRecord, Sessions
from services.tracking.store_rebuild import recreate, staging_tables, swap_in
from shared.domain.state_machine import RequestState
from shared.events import NotificationOutcome, notification_outcome_id
from shared.kafka import PermanentError
from shared.topics import Topic
from tests.unit.records import record_of
from tests.unit.test_tracking import CODES, LOOKUP_KEY, NATIONAL_ID, T0, TOPIC, Feed, lifecycle, new_database

# --- the rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "arriving", "wins"),
    [
        (None, "sent", True),
        (None, "delivered", True),
        (None, "failed", True),
        ("sent", "sent", False),
        ("sent", "delivered", True),
        ("sent", "failed", True),
        ("delivered", "sent", False),
        ("delivered", "delivered", False),
        ("delivered", "failed", False),
        ("failed", "sent", False),
        ("failed", "failed", False),
        ("failed", "delivered", False),
    ],
)
def test_only_a_step_forward_wins(stored: str | None, arriving: str, wins: bool) -> None:
    assert notification_outcome_wins(stored, arriving) is wins


def test_an_unknown_arriving_state_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown notification state"):
        notification_outcome_wins("sent", "read")


def test_the_overtaken_states_are_the_rule_as_a_set() -> None:
    assert states_overtaken_by("sent") == []
    assert states_overtaken_by("delivered") == ["sent"]
    assert states_overtaken_by("failed") == ["sent"]
    for arriving in NOTIFICATION_STATES:
        overtaken = [stored for stored in NOTIFICATION_STATES if notification_outcome_wins(stored, arriving)]
        assert states_overtaken_by(arriving) == overtaken


def settle(outcomes: Iterable[str]) -> str | None:
    stored: str | None = None
    for arriving in outcomes:
        if notification_outcome_wins(stored, arriving):
            stored = arriving
    return stored


@pytest.mark.parametrize("final", ["delivered", "failed"])
def test_every_order_of_the_same_outcomes_ends_in_the_final_one(final: str) -> None:
    # notify publishes at most one final state per notification; each outcome may come more than once.
    for order in itertools.permutations(["sent", "sent", final, final]):
        assert settle(order) == final, order


def test_labels_name_the_channel_the_status_and_the_outcome() -> None:
    fa, en = describe_notification("APPROVED", "sms", "delivered")
    assert "پیامک" in fa and "«تأییدشده»" in fa and "رسید" in fa
    assert en == "The SMS about the request becoming “approved” reached your phone."
    labels = {
        describe_notification(status.value, channel, state)
        for status in RequestState
        for channel in ("sms", "email")
        for state in NOTIFICATION_STATES
    }
    assert len(labels) == len(RequestState) * 2 * len(NOTIFICATION_STATES)  # every combination reads differently
    # A status a newer build added still gets a line, with its code.
    assert "PAID" in describe_notification("PAID", "email", "sent")[1]


# --- storing ---------------------------------------------------------------------------------------


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    engine, made = await new_database(tmp_path / "tracking.db")
    yield made
    await engine.dispose()


def outcome(
    state: str,
    *,
    code: str = "123456789012346",
    change: str = "change-1",
    channel: str = "sms",
    status: RequestState = RequestState.APPROVED,
    minute: int = 0,
) -> NotificationOutcome:
    return NotificationOutcome(
        event_id=notification_outcome_id(change, channel, state),
        tracking_code=code,
        occurred_at=T0 + timedelta(minutes=minute),
        status_event_id=change,
        status=status,
        channel=channel,
        state=state,
    )


async def rows(sessions: Sessions) -> list[NotificationRecord]:
    async with sessions() as session:
        query = select(NotificationRecord).order_by(NotificationRecord.status_event_id, NotificationRecord.channel)
        return list((await session.exec(query)).all())


async def test_a_receipt_moves_the_notification_and_nothing_moves_it_back(sessions: Sessions) -> None:
    assert await record_notification(sessions=sessions, outcome=outcome("sent", minute=1))
    assert await record_notification(sessions=sessions, outcome=outcome("delivered", minute=2))
    assert not await record_notification(sessions=sessions, outcome=outcome("sent", minute=1))
    assert not await record_notification(sessions=sessions, outcome=outcome("delivered", minute=2))
    [row] = await rows(sessions)
    assert (row.state, row.occurred_at, row.status) == ("delivered", T0 + timedelta(minutes=2), "APPROVED")


async def test_a_sent_after_its_failure_changes_nothing(sessions: Sessions) -> None:
    assert await record_notification(sessions=sessions, outcome=outcome("failed", minute=2))
    assert not await record_notification(sessions=sessions, outcome=outcome("sent", minute=1))
    assert [row.state for row in await rows(sessions)] == ["failed"]


# --- the subscriber --------------------------------------------------------------------------------


class Notices:
    """Records what the subscriber told the cache, as StatusCache.changed would be told."""

    def __init__(self) -> None:
        self.told: list[set[str]] = []

    async def __call__(self, codes: Iterable[str]) -> None:
        self.told.append(set(codes))


@pytest.fixture
def notices() -> Notices:
    return Notices()


async def deliver(sessions: Sessions, notices: Notices, event: NotificationOutcome | dict[str, object]) -> None:
    """Hand one desk.notifications record to the handler tracking's KeyOrderedConsumer calls."""
    await handle_notification_record(record_of(Topic.NOTIFICATIONS, event), sessions=sessions, on_stored=notices)


def test_the_service_stores_outcomes_with_a_keyed_consumer_of_its_own_group() -> None:
    """Not a faststream subscriber committing each record: a KeyOrderedConsumer, concurrent, commits batched."""
    from services.tracking.app import create_app
    from shared.keyed_consumer import KeyOrderedConsumer

    app = create_app()
    keyed = {(c.topic, c.group_id) for c in app.state.bus.consumers if isinstance(c, KeyOrderedConsumer)}
    assert ("desk.notifications", "tracking-notifications") in keyed
    assert not app.state.bus.broker.subscribers


async def test_a_record_of_another_type_is_skipped(sessions: Sessions, notices: Notices) -> None:
    await deliver(sessions, notices, {"event_type": "SomethingNewer"})
    assert notices.told == []
    async with sessions() as session:
        assert (await session.exec(select(NotificationRecord))).all() == []


@pytest.mark.parametrize("value", [None, b"[]", b"not json"])
async def test_a_record_that_is_no_event_is_refused_for_the_dead_letter_topic(
    sessions: Sessions, notices: Notices, value: bytes | None
) -> None:
    with pytest.raises(PermanentError):
        await handle_notification_record(record_of(Topic.NOTIFICATIONS, value), sessions=sessions, on_stored=notices)
    assert notices.told == []


async def test_outcomes_keep_the_latest_and_tell_the_cache_once_per_change(
    sessions: Sessions, notices: Notices
) -> None:
    code = "123456789012347"
    await deliver(sessions, notices, outcome("delivered", code=code, minute=2))
    await deliver(sessions, notices, outcome("sent", code=code, minute=1))  # overtaken by its receipt
    await deliver(sessions, notices, outcome("delivered", code=code, minute=2))  # redelivered
    await deliver(sessions, notices, outcome("sent", code=code, channel="email", minute=1))
    # A type this build does not know is skipped, not stored and not dead-lettered.
    await deliver(sessions, notices, {"event_type": "NotificationRead", "tracking_code": code})

    assert [(row.channel, row.state) for row in await rows(sessions)] == [("email", "sent"), ("sms", "delivered")]
    assert notices.told == [{code}, {code}]


async def test_a_failing_notice_does_not_fail_the_stored_outcome(sessions: Sessions) -> None:
    async def broken(codes: Iterable[str]) -> None:
        raise ConnectionError("redis away")

    await handle_notification_record(
        record_of(Topic.NOTIFICATIONS, outcome("sent")), sessions=sessions, on_stored=broken
    )
    assert [row.state for row in await rows(sessions)] == ["sent"]


# --- the citizen's answer --------------------------------------------------------------------------


async def test_the_answer_shows_each_notification_beside_the_change_it_told_about(sessions: Sessions) -> None:
    feed = Feed(sessions)
    events = lifecycle()
    await feed.fold(*events)
    code = events[0].tracking_code
    submitted_change, approved_change = status_change_id(events[0].event_id), status_change_id(events[2].event_id)
    for told in (
        outcome("delivered", code=code, change=approved_change, minute=9),
        outcome("sent", code=code, change=approved_change, channel="email", minute=8),
        outcome("delivered", code=code, change=submitted_change, status=RequestState.SUBMITTED, minute=5),
    ):
        await record_notification(sessions=sessions, outcome=told)
    # Another request's notification is not this request's.
    await record_notification(sessions=sessions, outcome=outcome("sent", code=CODES.next_code(), change="other"))

    found = await lookup(sessions=sessions, tracking_code=code, national_id=NATIONAL_ID, lookup_key=LOOKUP_KEY)
    assert found is not None
    answer = status_of(*found, await notifications_of(sessions=sessions, tracking_code=code))

    shown = [(item.status, item.channel, item.state) for item in answer.notifications]
    assert shown == [("SUBMITTED", "sms", "delivered"), ("APPROVED", "email", "sent"), ("APPROVED", "sms", "delivered")]
    first = answer.notifications[0]
    assert first.status_event_id == submitted_change
    assert first.status_changed_at == events[0].occurred_at
    assert first.occurred_at == T0 + timedelta(minutes=5)
    assert first.occurred_at_jalali and first.detail_fa and "«ثبت‌شده»" in first.detail_fa
    assert first.detail_en == "The SMS about the request becoming “submitted” reached your phone."
    assert answer.notifications[2].status_changed_at == events[2].occurred_at
    # Nothing about the applicant's contacts is in it.
    assert "09121234567" not in answer.model_dump_json()


async def test_a_rebuild_swap_leaves_the_notifications_alone(tmp_path: Path) -> None:
    engine, sessions = await new_database(tmp_path / "tracking.db")
    try:
        feed = Feed(sessions)
        await feed.fold(*lifecycle())
        await record_notification(sessions=sessions, outcome=outcome("delivered"))
        before = await rows(sessions)

        # An empty rebuilt projection that has folded as far as the live one: swapped in, notifications kept.
        staging = staging_tables()
        assert "request_notification" not in {table.name for table in [*staging.all(), *LIVE_TABLES.all()]}
        await recreate(engine, staging)
        folded_to = await stored_offsets(sessions=sessions, topic=TOPIC)
        async with engine.begin() as connection:
            await connection.execute(staging.offsets.insert(), [{"topic": TOPIC, "partition": 0, "next_offset": 3}])
        await swap_in(engine, topic=TOPIC, staging=staging, folded_to=folded_to, live=LIVE_TABLES)

        assert await stored_offsets(sessions=sessions, topic=TOPIC) == {0: 3}
        assert [row.model_dump() for row in await rows(sessions)] == [row.model_dump() for row in before]
    finally:
        await engine.dispose()
