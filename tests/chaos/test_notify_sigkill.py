"""notify killed with SIGKILL in the middle of a burst of 1,000 SMS and started again: the gateway ends up with
1,000 messages, one per (status change, channel), none twice; every notification is recorded as sent or
delivered. The sandbox gateway drops a resend with a localid it has seen, as Kavenegar does, which is what
makes a resend after a lost answer (the kill between the gateway's acceptance and notify's commit) safe: the rows
the killed process was sending keep its send lease, and the sweeper sends them once the lease runs out."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.domain.tracking_code import format_for_display
from shared.kafka import ensure_topics
from shared.settings import KafkaSettings
from shared.topics import Topic, core_topics
from testkit.harness import Stack
from testkit.infra import Servers
from testkit.inquiry_stream import send_all, submissions, submitted_changes

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(420)]

N = 1000
SHOWN_CODE = re.compile(r"[0-9]{5}-[0-9]{5}-[0-9]{5}")


async def gateway_messages(url: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(timeout=10) as client:
        return list((await client.get(f"{url}/messages")).json())


def states(db: Path) -> Counter[str]:
    connection = sqlite3.connect(db, timeout=5)
    try:
        return Counter(state for (state,) in connection.execute("SELECT state FROM notify_notification"))
    finally:
        connection.close()


async def test_sigkilled_notify_sends_each_of_1000_sms_exactly_once(servers: Servers, tmp_path: Path) -> None:
    await ensure_topics(KafkaSettings(bootstrap_servers=servers.kafka_bootstrap), core_topics())
    # A short send timeout makes the send lease short (3 x (2 s + 2 s) + 10 s = 22 s): the rows the killed process
    # held are swept in this test's time, not after the default two minutes.
    fast_sweep = {"NOTIFY_SEND_TIMEOUT_S": "2", "NOTIFY_SWEEP_EVERY_S": "1", "NOTIFY_STALE_AFTER_S": "5"}
    stack = Stack(servers, tmp_path, group_prefix=f"nkill-{uuid.uuid4().hex[:8]}", extra_env=fast_sweep)
    await asyncio.to_thread(stack.start_groups_at_end)
    stack.start("sandbox")
    await asyncio.to_thread(stack.wait_ready, ("sandbox",))

    requests = submissions(N)  # applicants with a mobile and no email: one SMS per status change
    changes = submitted_changes(requests)
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap, acks="all", linger_ms=10)
    await producer.start()
    try:
        await send_all(producer, requests)  # the contacts, on desk.requests
        await send_all(producer, changes, topic=Topic.STATUS)
    finally:
        await producer.stop()

    db = tmp_path / "notify.db"
    try:
        stack.start("notify")
        async with asyncio.timeout(180):
            while len(await gateway_messages(stack.sms_url)) < N // 3:
                await asyncio.sleep(0.05)
        await asyncio.to_thread(stack.signal, "notify", signal.SIGKILL)
        at_kill = len(await gateway_messages(stack.sms_url))
        assert at_kill < N, "the kill must land mid-burst"
        recorded_at_kill = states(db)

        stack.start("notify")
        async with asyncio.timeout(240):
            while len(await gateway_messages(stack.sms_url)) < N:
                await asyncio.sleep(0.2)
        # The rows the killed process was sending stay `created` under its lease; once the lease runs out the
        # sweeper sends them again, and the gateway drops each resend by its localid.
        async with asyncio.timeout(90):
            while set(final := states(db)) - {"sent", "delivered"}:
                await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # anything still in flight would show now
        messages = await gateway_messages(stack.sms_url)
        final = states(db)
    finally:
        await asyncio.to_thread(stack.stop_all)

    swept = stack.logs().count("sweeper sent")
    print(f"\nkilled after {at_kill} SMS at the gateway (recorded: {dict(recorded_at_kill)}); then {dict(final)}")
    print(f"sweeper rounds that sent: {swept}")
    assert len(messages) == N
    by_receptor_and_text = Counter((m["receptor"], m["message"]) for m in messages)
    assert max(by_receptor_and_text.values()) == 1, "an applicant was texted twice about one change"
    # Every request's applicant got their message: the codes shown in the texts are exactly the burst's.
    shown = {match for m in messages for match in SHOWN_CODE.findall(str(m["message"]))}
    assert shown == {format_for_display(request.tracking_code) for request in requests}
    assert sum(final.values()) == N and set(final) <= {"sent", "delivered"}
