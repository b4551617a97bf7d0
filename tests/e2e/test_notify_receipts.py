"""Delivery receipts through the running desk: the sandbox gateway reports each SMS delivered to notify's
webhook, and notify's record of the request shows every SMS delivered (emails stay sent: SMTP has no receipt);
tracking hears the outcomes on desk.notifications and the citizen's lookup shows each SMS delivered."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from shared.events import NotificationOutcome
from shared.topics import Topic
from testkit.data import submission
from testkit.harness import NOTIFY_KEY, Stack
from testkit.kafka_tools import read_topic
from tests.e2e.test_request_flow import lookup, wait_for


def test_every_sms_of_a_request_ends_delivered(stack: Stack) -> None:
    body = submission()
    nid = body["applicant"]["national_id"]
    code = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15).json()["tracking_code"]
    wait_for(lambda: (found := lookup(stack, code, nid)) and found["status"] == "APPROVED", timeout_s=30)

    def told() -> list[dict[str, Any]]:
        response = httpx.get(stack.url("notify") + f"/internal/v1/notifications/{code}", headers=NOTIFY_KEY)
        return list(response.json()["notifications"]) if response.status_code == 200 else []

    def all_sms_delivered() -> list[dict[str, Any]]:
        sms = [row for row in told() if row["channel"] == "sms"]
        return sms if len(sms) == 3 and all(row["state"] == "delivered" for row in sms) else []

    delivered = wait_for(all_sms_delivered, timeout_s=30)
    assert {row["status"] for row in delivered} == {"SUBMITTED", "VERIFYING", "APPROVED"}
    assert all(row["state"] == "sent" for row in told() if row["channel"] == "email")

    # Every outcome is on desk.notifications, each once, with no contact details.
    def outcomes() -> list[NotificationOutcome]:
        records = asyncio.run(read_topic(stack.servers.kafka_bootstrap, Topic.NOTIFICATIONS))
        return [
            event
            for event in (NotificationOutcome.model_validate_json(record.value) for record in records)
            if event.tracking_code == code
        ]

    # Each SMS ends delivered (its `sent` may be overtaken by the receipt and never published), each email sent.
    def all_outcomes() -> list[NotificationOutcome]:
        found = outcomes()
        final = {(e.status, e.channel, e.state) for e in found}
        wanted = {
            (status, channel, state)
            for status in ("SUBMITTED", "VERIFYING", "APPROVED")
            for channel, state in (("sms", "delivered"), ("email", "sent"))
        }
        return found if wanted <= final else []

    seen = wait_for(all_outcomes, timeout_s=30)
    assert len(seen) == len({e.event_id for e in seen}), "an outcome was published twice"
    assert {(e.channel, e.state) for e in seen} <= {("sms", "sent"), ("sms", "delivered"), ("email", "sent")}
    assert body["applicant"]["mobile"] not in str([e.model_dump() for e in seen])

    # tracking keeps the same outcomes: the citizen's lookup shows each SMS delivered, beside its status change.
    def sms_delivered_in_tracking() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        found = lookup(stack, code, nid)
        if not found:
            return None
        sms = [item for item in found["notifications"] if item["channel"] == "sms"]
        if {item["status"] for item in sms if item["state"] == "delivered"} != {"SUBMITTED", "VERIFYING", "APPROVED"}:
            return None
        return found, sms

    answer, sms_shown = wait_for(sms_delivered_in_tracking, timeout_s=30)
    assert len(sms_shown) == 3
    assert {item["status_event_id"] for item in sms_shown} == {e.status_event_id for e in seen if e.channel == "sms"}
    changes = {(entry["status_after"], entry["occurred_at"]) for entry in answer["timeline"] if entry["applied"]}
    for item in sms_shown:
        assert (item["status"], item["status_changed_at"]) in changes, item
        assert item["detail_fa"] and item["detail_en"].startswith("The SMS about the request becoming")
    assert all(item["state"] == "sent" for item in answer["notifications"] if item["channel"] == "email")
    assert body["applicant"]["mobile"] not in str(answer)
