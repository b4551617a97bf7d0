"""notify through the running desk, against the sandbox SMS gateway and SMTP sink: a redelivered status change
sends nothing new, a citizen's channel choice is kept, and a change that keeps failing is dead-lettered."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from shared.domain.tracking_code import format_for_display
from shared.envelope import decode_headers
from shared.topics import Topic, dead_letter_topic
from testkit.data import submission
from testkit.harness import NOTIFY_KEY, Stack
from testkit.kafka_tools import group_caught_up, read_topic, replay
from tests.e2e.test_request_flow import lookup, wait_for


def submit(stack: Stack, body: dict[str, Any]) -> str:
    response = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15)
    assert response.status_code == 202, response.text
    return str(response.json()["tracking_code"])


def texts_for(stack: Stack, code: str) -> list[dict[str, Any]]:
    shown = format_for_display(code)
    return [m for m in httpx.get(stack.sms_url + "/messages").json() if shown in m["message"]]


def mails_for(stack: Stack, code: str) -> list[dict[str, Any]]:
    shown = format_for_display(code)
    return [m for m in httpx.get(stack.smtp_http_url + "/messages").json() if shown in (m["text"] or "") + m["subject"]]


def test_a_redelivered_status_change_sends_nothing_new(stack: Stack) -> None:
    body = submission()
    code = submit(stack, body)
    try:
        wait_for(lambda: len(texts_for(stack, code)) == 3 and len(mails_for(stack, code)) == 3, timeout_s=40)
    except AssertionError:
        print(len(texts_for(stack, code)), len(mails_for(stack, code)), stack.tail("notify", 80))
        raise

    changes = [
        record
        for record in asyncio.run(read_topic(stack.servers.kafka_bootstrap, Topic.STATUS))
        if record.key == code.encode()
    ]
    assert len(changes) == 3
    asyncio.run(replay(stack.servers.kafka_bootstrap, changes))  # each change delivered to notify a second time
    group = f"{stack.group_prefix}-notify"
    wait_for(lambda: asyncio.run(group_caught_up(stack.servers.kafka_bootstrap, group, Topic.STATUS)), timeout_s=40)
    assert len(texts_for(stack, code)) == 3
    assert len(mails_for(stack, code)) == 3


def test_a_citizen_who_chose_email_gets_no_sms(stack: Stack) -> None:
    body = submission()
    body["applicant"]["notification_channels"] = ["email"]
    code = submit(stack, body)
    nid = body["applicant"]["national_id"]
    wait_for(lambda: (found := lookup(stack, code, nid)) and found["status"] == "APPROVED", timeout_s=30)
    wait_for(lambda: len(mails_for(stack, code)) == 3, timeout_s=30)
    # Each change's SMS would have gone before its email (the channel order): none did.
    # The failed SMS is never sent afterwards. The request's later changes waited behind it (one request's changes
    # go in order) and may be texted once the gateway is back, between its recovery and this check.
    assert not [text for text in texts_for(stack, code) if "» ثبت شد." in text["message"]]

    refused = httpx.post(
        stack.url("intake") + "/api/v1/requests",
        json={**body, "applicant": {**body["applicant"], "email": None}},
        timeout=15,
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "email_channel_without_address" in refused.text


def test_a_change_that_keeps_failing_lands_on_the_dead_letter_topic(stack: Stack) -> None:
    body = submission()
    body["applicant"]["notification_channels"] = ["sms"]
    mobile = body["applicant"]["mobile"]
    faults = stack.sms_url + "/control/faults"
    assert httpx.put(faults, json={"down": True}).status_code == 200
    try:
        code = submit(stack, body)

        def dead_letters() -> list[Any]:
            records = asyncio.run(read_topic(stack.servers.kafka_bootstrap, dead_letter_topic(Topic.STATUS)))
            return [record for record in records if record.key == code.encode()]

        [first, *_] = wait_for(dead_letters, timeout_s=90)
    finally:
        httpx.delete(faults)
    headers = decode_headers(first.headers)
    assert headers["dlq_source_topic"] == Topic.STATUS
    # The reason names the channel and the provider's answer, after the whole attempt budget (3 deliveries).
    assert headers["dlq_reason"].startswith("PermanentError: sms: every SMS gateway failed")
    assert "503" in headers["dlq_reason"]
    assert mobile not in str(first.headers) and mobile.encode() not in first.value
    rows = httpx.get(stack.url("notify") + f"/internal/v1/notifications/{code}", headers=NOTIFY_KEY).json()[
        "notifications"
    ]
    failed = [row for row in rows if row["status"] == "SUBMITTED"]
    assert [(row["channel"], row["state"], row["attempts"]) for row in failed] == [("sms", "failed", 9)]
    # The failed SMS is never sent afterwards. The request's later changes waited behind it (one request's changes
    # go in order) and may be texted once the gateway is back, between its recovery and this check.
    assert not [text for text in texts_for(stack, code) if "» ثبت شد." in text["message"]]
