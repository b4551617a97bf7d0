"""Quiet hours against the real sandbox SMS gateway and SMTP sink, with an injected clock: a status change at
23:30 Tehran time sends its email at once and holds its SMS; the sweeper sends the SMS at 07:00, once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from sandbox.runner import SandboxEndpoints
from sandbox.sms_gateway import DEFAULT_API_KEY
from services.notify.adapters import KavenegarSmsClient, SmtpEmailSender
from services.notify.adapters_templates import Renderer
from services.notify.service import record_contact
from services.notify.service_sweeper import sweep
from services.notify.store import Sessions
from shared.catalog import load_catalog
from shared.domain.state_machine import RequestState
from shared.domain.tracking_code import format_for_display
from tests.unit.test_notify import new_code, status_changed, submitted
from tests.unit.test_notify_quiet_hours import LATE_EVENING, MORNING, tell

pytestmark = pytest.mark.asyncio


async def test_a_late_sms_is_held_until_the_morning_and_sent_once(
    sandbox: SandboxEndpoints, notify_sessions: Sessions
) -> None:
    sessions = notify_sessions
    sms = KavenegarSmsClient(base_url=sandbox.sms_url, api_key=DEFAULT_API_KEY, sender="1000", timeout_s=5)
    email = SmtpEmailSender(
        host=sandbox.smtp_host,
        port=sandbox.smtp_port,
        mail_from="no-reply@khedmat.example",
        starttls=False,
        timeout_s=5,
    )
    code = new_code()
    shown = format_for_display(code)
    await record_contact(sessions=sessions, event=submitted(code))
    approved = status_changed(code, RequestState.APPROVED)

    async def texts() -> list[object]:
        async with httpx.AsyncClient() as client:
            return [m for m in (await client.get(f"{sandbox.sms_url}/messages")).json() if shown in m["message"]]

    async def mails() -> list[object]:
        async with httpx.AsyncClient() as client:
            found = (await client.get(f"{sandbox.smtp_http_url}/messages")).json()
        return [m for m in found if shown in (m["text"] or "") + m["subject"]]

    try:
        renderer = Renderer(load_catalog())
        assert await tell(sessions, renderer, sms, email, approved, LATE_EVENING) == ["email"]
        assert len(await mails()) == 1 and await texts() == []
        # The night goes on: a redelivery, and sweeps before the hour, send nothing.
        await tell(sessions, renderer, sms, email, approved, LATE_EVENING + timedelta(hours=3))
        assert await sweep(sessions=sessions, sms=sms, email=email, now=lambda: MORNING - timedelta(minutes=1)) == 0
        assert await texts() == []
        # 07:00 in Tehran: two sweepers (two replicas) race for it; the gateway gets it once.
        swept = await asyncio.gather(
            *(sweep(sessions=sessions, sms=sms, email=email, now=lambda: MORNING) for _ in range(2))
        )
        assert sum(swept) == 1
        [text] = await texts()
        assert len(await mails()) == 1
    finally:
        await sms.aclose()
    assert isinstance(text, dict) and text["receptor"] == "09121234567"
