"""One request through the whole desk, each service a separate process on real Kafka and Redis."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx

from shared.domain.jalali import to_jalali_datetime_text
from shared.domain.tracking_code import format_for_display
from testkit.data import submission
from testkit.harness import Stack


def wait_for(predicate: Any, *, timeout_s: float, interval_s: float = 0.2) -> Any:
    """Poll until `predicate()` returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met in {timeout_s}s; last value: {last!r}")


def lookup(stack: Stack, code: str, nid: str) -> dict[str, Any] | None:
    response = httpx.post(
        stack.url("tracking") + "/api/v1/tracking/lookup", json={"tracking_code": code, "national_id": nid}
    )
    return response.json() if response.status_code == 200 else None


def test_submitted_request_is_approved_and_the_citizen_gets_email_and_sms(stack: Stack) -> None:
    body = submission()
    nid = body["applicant"]["national_id"]
    response = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15)
    assert response.status_code == 202, response.text
    code = response.json()["tracking_code"]
    submitted = time.monotonic()

    status = wait_for(
        lambda: (found := lookup(stack, code, nid)) and found["status"] == "APPROVED" and found, timeout_s=30
    )
    assert [entry["event_type"] for entry in status["timeline"]] == [
        "RequestSubmitted",
        "InquiryCompleted",
        "VerificationCompleted",
    ]
    # Every time also on Tehran's wall clock in the Jalali calendar, the same moment as the ISO one.
    for entry in status["timeline"]:
        moment = datetime.fromisoformat(entry["occurred_at"])
        assert entry["occurred_at_jalali"] == to_jalali_datetime_text(moment)
        assert entry["occurred_at_jalali"].startswith("14")
    assert status["submitted_at_jalali"] == to_jalali_datetime_text(datetime.fromisoformat(status["submitted_at"]))
    shown = format_for_display(code)

    def mail_for_code() -> list[dict[str, Any]]:
        messages = httpx.get(stack.smtp_http_url + "/messages").json()
        return [m for m in messages if shown in (m["text"] or "") + m["subject"]]

    def sms_for_code() -> list[dict[str, Any]]:
        return [m for m in httpx.get(stack.sms_url + "/messages").json() if shown in m["message"]]

    try:
        emails = wait_for(lambda: len(mail_for_code()) >= 3 and mail_for_code(), timeout_s=20)
    except AssertionError:
        print(httpx.get(stack.smtp_http_url + "/messages").json(), stack.tail("notify"))
        raise
    texts = wait_for(lambda: len(sms_for_code()) >= 3 and sms_for_code(), timeout_s=20)
    elapsed = time.monotonic() - submitted
    # One message per status change (SUBMITTED, VERIFYING, APPROVED) and channel, none twice.
    assert len(emails) == 3, emails
    assert len(texts) == 3, texts
    assert all(m["receptor"] == body["applicant"]["mobile"] for m in texts)
    assert all(m["rcpt_to"] == [body["applicant"]["email"]] for m in emails)
    print(f"approved, emailed and texted {elapsed:.1f}s after submission")


def test_lookup_with_the_wrong_national_id_looks_like_no_such_request(stack: Stack) -> None:
    body = submission()
    response = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15)
    code = response.json()["tracking_code"]
    wait_for(lambda: lookup(stack, code, body["applicant"]["national_id"]), timeout_s=30)
    wrong = httpx.post(
        stack.url("tracking") + "/api/v1/tracking/lookup", json={"tracking_code": code, "national_id": "0012345679"}
    )
    unknown = httpx.post(
        stack.url("tracking") + "/api/v1/tracking/lookup",
        json={"tracking_code": "000000000000000", "national_id": body["applicant"]["national_id"]},
    )
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.headers["content-type"] == unknown.headers["content-type"] == "application/problem+json"
    assert wrong.json()["title"] == unknown.json()["title"]
