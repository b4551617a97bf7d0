"""Delivery receipts: they move a notification to delivered or failed, never out of a final state, never for
another message; a delivered receipt may overtake the recording of the send; the webhook needs its token."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import Update

from services.notify.app import create_app
from services.notify.domain import NotificationState, after_receipt
from services.notify.service_receipts import apply_receipt
from services.notify.settings import NotifySettings
from services.notify.store import Notification, Sessions, create_tables
from shared.db import make_engine
from tests.asgi import asgi_client

S = NotificationState


@pytest.mark.parametrize(
    ("state", "receipt", "after"),
    [
        (S.SENT, "delivered", S.DELIVERED),
        (S.SENT, "failed", S.FAILED),
        (S.SENT, "undelivered", S.FAILED),
        (S.CREATED, "delivered", S.DELIVERED),  # the receipt overtook the recording of the send
        (S.CREATED, "failed", None),  # the send's own outcome decides
        (S.DELIVERED, "failed", None),
        (S.DELIVERED, "delivered", None),
        (S.FAILED, "delivered", None),
        (S.SENT, "queued", None),
    ],
)
def test_receipts_move_only_forward(state: NotificationState, receipt: str, after: NotificationState | None) -> None:
    assert after_receipt(state, receipt) == after


@pytest.fixture
def sessions(notify_sessions: Sessions) -> Sessions:
    return notify_sessions


async def add_row(sessions: Sessions, state: str, provider_id: str | None) -> int:
    async with sessions() as session:
        row = Notification(status_event_id="e-1", channel="sms", tracking_code="1" * 15, status="APPROVED", state=state)
        row.provider_message_id = provider_id
        session.add(row)
        await session.commit()
        assert row.id is not None
        return row.id


async def state_of(sessions: Sessions, row_id: int) -> str:
    async with sessions() as session:
        row = await session.get(Notification, row_id)
        assert row is not None
        return row.state


async def test_a_receipt_for_another_message_changes_nothing(sessions: Sessions) -> None:
    row_id = await add_row(sessions, "sent", "100000001")
    assert (
        await apply_receipt(sessions=sessions, local_id=str(row_id), message_id="999", receipt_status="delivered")
        is None
    )
    assert (
        await apply_receipt(sessions=sessions, local_id="x", message_id="100000001", receipt_status="delivered") is None
    )
    assert await state_of(sessions, row_id) == "sent"
    changed = await apply_receipt(
        sessions=sessions, local_id=str(row_id), message_id="100000001", receipt_status="delivered"
    )
    assert changed == "delivered" and await state_of(sessions, row_id) == "delivered"
    # Late and repeated receipts leave it delivered.
    for late in ("failed", "delivered"):
        await apply_receipt(sessions=sessions, local_id=str(row_id), message_id="100000001", receipt_status=late)
    assert await state_of(sessions, row_id) == "delivered"


async def test_the_receipt_webhook_needs_its_token(tmp_path: Path) -> None:
    settings = NotifySettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/api.db")
    app = create_app(settings, tracer_provider=TracerProvider())
    engine = make_engine(settings.database_url)
    async with engine.begin() as conn:
        await create_tables(conn)
    await engine.dispose()
    body = {"messageid": 1, "localid": "1", "status": "delivered"}
    async with asgi_client(app, "http://notify") as client:
        refused = await client.post("/internal/v1/sms/receipts?token=wrong", json=body)
        accepted = await client.post("/internal/v1/sms/receipts?token=dev-only-receipt-token", json=body)
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    assert accepted.status_code == 204


async def test_a_receipt_that_overtakes_the_send_still_leaves_the_send_recorded(sessions: Sessions) -> None:
    """The gateway's webhook can land before notify records the gateway's answer: the row ends delivered, with
    when it was sent and the provider's id, and its lease given back."""
    from services.notify.domain import Channel
    from services.notify.service import SendPolicy, record_contact
    from services.notify.service_sweeper import sweep
    from tests.unit.test_notify import FakeEmail, new_code, submitted

    class ReceiptFirstSms:
        async def send(self, *, receptor: str, message: str, local_id: str) -> str:
            await apply_receipt(
                sessions=sessions, local_id=local_id, message_id="100000007", receipt_status="delivered"
            )
            return "100000007"

    code = new_code()
    await record_contact(sessions=sessions, event=submitted(code, email=None))
    async with sessions() as session:
        row = Notification(
            status_event_id="e-overtaken", channel=Channel.SMS.value, tracking_code=code, status="APPROVED", body="hi"
        )
        row.not_before = row.created_at  # due for the sweeper now
        session.add(row)
        await session.commit()
        row_id = row.id
    sent = await sweep(sessions=sessions, sms=ReceiptFirstSms(), email=FakeEmail(), policy=SendPolicy())
    assert sent == 1  # it went out, though the receipt had already made it delivered
    async with sessions() as session:
        done = await session.get(Notification, row_id)
        assert done is not None
        assert (done.state, done.provider_message_id, done.lease_until) == ("delivered", "100000007", None)
        assert done.sent_at is not None and done.delivered_at is not None


class _ReceiptMidFinish:
    """A session factory whose first UPDATE is preceded by a delivery receipt applied in its own session: the
    receipt lands between `record_round`'s read of the row and its write, as the gateway's webhook can."""

    def __init__(self, sessions: Sessions, receipt: Callable[[], Awaitable[object]]) -> None:
        self.sessions, self.receipt, self.fired = sessions, receipt, False

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[Any]:
        async with self.sessions() as session:
            outer = self

            class Interleaved:
                def __getattr__(self, name: str) -> Any:
                    return getattr(session, name)

                async def exec(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
                    if isinstance(statement, Update) and not outer.fired:
                        outer.fired = True
                        await outer.receipt()
                    return await session.exec(statement, *args, **kwargs)

            yield Interleaved()


async def test_a_receipt_between_the_sends_read_and_write_is_not_overwritten(sessions: Sessions) -> None:
    from services.notify.store import record_round

    row_id = await add_row(sessions, "created", None)

    async def receipt() -> object:
        return await apply_receipt(
            sessions=sessions, local_id=str(row_id), message_id="100000009", receipt_status="delivered"
        )

    interleaved = _ReceiptMidFinish(sessions, receipt)
    end = await record_round(interleaved, row_id, budget=9, delivered=True, provider_id="100000009")  # type: ignore[arg-type]
    assert interleaved.fired
    assert end.state is S.DELIVERED
    async with sessions() as session:
        row = await session.get(Notification, row_id)
        assert row is not None
        assert (row.state, row.provider_message_id, row.lease_until) == ("delivered", "100000009", None)
        assert row.sent_at is not None
