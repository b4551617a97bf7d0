"""A citizen's history through the running desk: a one-time code texted by notify to the mobile on record, a
short-lived token for it, then every request of theirs with its result; nothing is revealed to a stranger."""

from __future__ import annotations

import re
from typing import Any

import httpx

from shared.domain.digits import normalize_digits
from shared.domain.identity import make_valid_national_id
from testkit.data import submission
from testkit.harness import Stack
from tests.e2e.test_request_flow import lookup, wait_for

# The Persian line writes the code in Persian digits; the citizen may type it either way.
CODE_IN_SMS = re.compile(r"کد یکبارمصرف شما ([۰-۹]{6})")


def texts(stack: Stack) -> list[dict[str, Any]]:
    return list(httpx.get(stack.sms_url + "/messages").json())


def test_history_opens_with_a_texted_code_and_lists_the_citizens_requests(stack: Stack) -> None:
    body = submission()
    nid, mobile = body["applicant"]["national_id"], body["applicant"]["mobile"]
    accepted = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15)
    code = accepted.json()["tracking_code"]
    wait_for(lambda: (found := lookup(stack, code, nid)) and found["status"] == "APPROVED", timeout_s=30)
    tracking = stack.url("tracking") + "/api/v1/tracking/history"

    # A stranger's national ID gets the very same answer, and nobody is texted.
    before = len(texts(stack))
    stranger = httpx.post(tracking + "/one-time-code", json={"national_id": make_valid_national_id("987654321")})
    asked = httpx.post(tracking + "/one-time-code", json={"national_id": nid})
    assert stranger.status_code == asked.status_code == 202
    assert stranger.json() == asked.json()
    sent = wait_for(lambda: [m for m in texts(stack)[before:] if CODE_IN_SMS.search(m["message"])], timeout_s=10)
    assert len(sent) == 1 and sent[0]["receptor"] == mobile
    one_time_code = normalize_digits(CODE_IN_SMS.search(sent[0]["message"]).group(1))  # type: ignore[union-attr]

    assert httpx.get(tracking).status_code == 401
    wrong = "000000" if one_time_code != "000000" else "111111"
    assert httpx.post(tracking + "/token", json={"national_id": nid, "code": wrong}).status_code == 401
    granted = httpx.post(tracking + "/token", json={"national_id": nid, "code": one_time_code})
    assert granted.status_code == 200, granted.text
    token = granted.json()["token"]
    assert nid not in token
    # Used once: the same code opens nothing again.
    assert httpx.post(tracking + "/token", json={"national_id": nid, "code": one_time_code}).status_code == 401

    history = httpx.get(tracking, headers={"Authorization": f"Bearer {token}"})
    assert history.status_code == 200, history.text
    [request] = [item for item in history.json()["requests"] if item["tracking_code"] == code]
    assert request["status"] == "APPROVED" and request["service_id"] == body["service_id"]
    assert httpx.get(tracking, headers={"Authorization": f"Bearer {token}x"}).status_code == 401
