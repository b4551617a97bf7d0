"""Who looked at my file, through the running desk: a citizen signs in (a code texted to the mobile the registry
lists), looks their request up anonymously by code and national ID, reads their history, and the access log lists
those reads and the agency's review disclosure (recorded by inquiry when the request went to the agency's inbox),
newest first and paged; another citizen's session sees none of it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from sandbox.agencies import property_owner, registered_mobile
from shared.domain.jalali import to_jalali_datetime_text
from testkit.data import living_national_id, submission
from testkit.harness import Stack
from testkit.identity import bearer, sign_in
from tests.e2e.test_request_flow import lookup, wait_for
from tests.problems import assert_problem

SERVICE_ID = "property-ownership-certificate"
AGENCY = "property-registry"


def reviewed_submission() -> dict[str, Any]:
    """A property-ownership request the inquiries confirm, so it goes to the property registry's review."""
    body = submission()
    nid = body["applicant"]["national_id"]
    plaque = next(f"{n}-A-{n * 7}" for n in range(1, 100) if property_owner(nid, f"{n}-A-{n * 7}"))
    return {**body, "service_id": SERVICE_ID, "fields": {"property_id": plaque}}


def access_log(stack: Stack, headers: dict[str, str], **params: int) -> httpx.Response:
    return httpx.get(stack.url("tracking") + "/api/v1/tracking/access-log", params=params, headers=headers)


def test_the_access_log_shows_the_citizens_reads_and_the_agencys_review_newest_first(stack: Stack) -> None:
    body = reviewed_submission()
    nid = body["applicant"]["national_id"]
    accepted = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15)
    assert accepted.status_code == 202, accepted.text
    code = accepted.json()["tracking_code"]
    tokens = bearer(sign_in(stack, nid, body["applicant"]["mobile"]))

    wait_for(lambda: (found := lookup(stack, code, nid)) and found["status"] == "IN_REVIEW", timeout_s=40)
    looked = httpx.post(
        stack.url("tracking") + "/api/v1/tracking/lookup", json={"tracking_code": code, "national_id": nid}
    )
    assert looked.status_code == 200, looked.text
    history = httpx.get(stack.url("tracking") + "/api/v1/tracking/history", headers=tokens)
    assert history.status_code == 200, history.text

    def with_history_and_review() -> list[dict[str, Any]] | None:
        accesses: list[dict[str, Any]] = access_log(stack, tokens, limit=100).json()["accesses"]
        kinds = {(a["actor_kind"], a["resource_kind"]) for a in accesses}
        return accesses if {("citizen", "history"), ("agency", "request")} <= kinds else None

    accesses = wait_for(with_history_and_review, timeout_s=30, interval_s=0.5)
    seqs = [a["seq"] for a in accesses]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs), "newest first"

    own = [a for a in accesses if a["actor_kind"] == "citizen"]
    assert {(a["actor"], a["organisation"], a["role"], a["purpose"]) for a in own} == {
        ("self", "desk", "citizen", "follow_up")
    }
    # The history read came after the last lookup: it is listed before it.
    kinds = [a["resource_kind"] for a in own if a["resource_kind"] != "access_log"]
    assert kinds[0] == "history" and kinds[1] == "request"
    assert {a["resource"] for a in own if a["resource_kind"] == "request"} == {code}
    assert [a["resource"] for a in own if a["resource_kind"] == "history"] == ["history"]

    [review] = [a for a in accesses if a["actor_kind"] == "agency"]
    assert (review["actor"], review["organisation"], review["role"]) == (AGENCY, AGENCY, "reviewer")
    assert (review["purpose"], review["resource_kind"], review["resource"]) == ("review", "request", code)
    assert review["detail_fa"] == "سازمان ثبت اسناد و املاک کشور درخواست شما را برای بررسی دید."
    [history_read] = [a for a in own if a["resource_kind"] == "history"]
    assert review["seq"] < history_read["seq"]  # disclosed before the history was read

    for access in accesses:
        moment = datetime.fromisoformat(access["occurred_at"])
        assert moment.utcoffset() == timedelta(0)
        assert access["occurred_at_jalali"] == to_jalali_datetime_text(moment)
    answer_text = str(accesses)
    assert nid not in answer_text and body["applicant"]["mobile"] not in answer_text

    # Paged by `before`: pages of two, from the newest seen, give the same list.
    paged: list[int] = []
    before: int | None = seqs[0] + 1
    while before is not None:
        page = access_log(stack, tokens, limit=2, before=before).json()
        paged += [a["seq"] for a in page["accesses"]]
        before = page["next_before"]
    assert paged == seqs


def test_another_citizen_sees_none_of_it_and_no_session_sees_nothing(stack: Stack) -> None:
    body = reviewed_submission()
    nid = body["applicant"]["national_id"]
    accepted = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15)
    code = accepted.json()["tracking_code"]
    wait_for(lambda: (found := lookup(stack, code, nid)) and found["status"] == "IN_REVIEW", timeout_s=40)

    owner = bearer(sign_in(stack, nid, body["applicant"]["mobile"]))
    wait_for(lambda: code in access_log(stack, owner).text, timeout_s=30, interval_s=0.5)

    other = living_national_id()
    theirs = access_log(stack, bearer(sign_in(stack, other, registered_mobile(other))), limit=100)
    assert theirs.status_code == 200, theirs.text
    assert code not in theirs.text
    assert not [a for a in theirs.json()["accesses"] if a["resource_kind"] != "access_log"]

    refused = access_log(stack, {})
    assert_problem(refused, 401, slug="session-unauthenticated")
    assert refused.headers["www-authenticate"] == "Bearer"
