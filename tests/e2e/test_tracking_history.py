"""A citizen's history through the running desk: signed in through identity (a code texted to the mobile the
registry lists under the national ID), every request of theirs with its result; another citizen's session
sees only its own."""

from __future__ import annotations

import httpx

from sandbox.agencies import registered_mobile
from testkit.data import living_national_id, submission
from testkit.harness import Stack
from testkit.identity import bearer, sign_in
from tests.e2e.test_request_flow import lookup, wait_for
from tests.problems import assert_problem


def test_history_lists_the_signed_in_citizens_requests_and_no_one_elses(stack: Stack) -> None:
    body = submission()
    nid, mobile = body["applicant"]["national_id"], body["applicant"]["mobile"]
    accepted = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15)
    code = accepted.json()["tracking_code"]
    wait_for(lambda: (found := lookup(stack, code, nid)) and found["status"] == "APPROVED", timeout_s=30)
    history = stack.url("tracking") + "/api/v1/tracking/history"

    refused = httpx.get(history)
    assert_problem(refused, 401, slug="session-unauthenticated")
    assert refused.headers["www-authenticate"] == "Bearer"

    tokens = sign_in(stack, nid, mobile)
    answer = httpx.get(history, headers=bearer(tokens))
    assert answer.status_code == 200, answer.text
    [request] = [item for item in answer.json()["requests"] if item["tracking_code"] == code]
    assert request["status"] == "APPROVED" and request["service_id"] == body["service_id"]
    assert_problem(httpx.get(history, headers=bearer({"access_token": tokens["access_token"] + "x"})), 401)

    # Citizen B, signed in, sees B's history only: nothing in the request names whose history to read.
    other = living_national_id()
    theirs = httpx.get(history, headers=bearer(sign_in(stack, other, registered_mobile(other))))
    assert theirs.status_code == 200
    assert code not in theirs.text
