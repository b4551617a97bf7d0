"""Delivery receipts through the running desk: the sandbox gateway reports each SMS delivered to notify's
webhook, and notify's record of the request shows every SMS delivered (emails stay sent: SMTP has no receipt)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.data import submission
from tests.e2e.test_request_flow import lookup, wait_for
from tests.harness import Stack


def test_every_sms_of_a_request_ends_delivered(stack: Stack) -> None:
    body = submission()
    nid = body["applicant"]["national_id"]
    code = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15).json()["tracking_code"]
    wait_for(lambda: (found := lookup(stack, code, nid)) and found["status"] == "APPROVED", timeout_s=30)

    def told() -> list[dict[str, Any]]:
        response = httpx.get(stack.url("notify") + f"/api/v1/notifications/{code}")
        return list(response.json()["notifications"]) if response.status_code == 200 else []

    def all_sms_delivered() -> list[dict[str, Any]]:
        sms = [row for row in told() if row["channel"] == "sms"]
        return sms if len(sms) == 3 and all(row["state"] == "delivered" for row in sms) else []

    delivered = wait_for(all_sms_delivered, timeout_s=30)
    assert {row["status"] for row in delivered} == {"SUBMITTED", "VERIFYING", "APPROVED"}
    assert all(row["state"] == "sent" for row in told() if row["channel"] == "email")
