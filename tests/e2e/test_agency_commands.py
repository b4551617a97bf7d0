"""Agency commands answer the truth on the running desk: each refusal is told at once and puts nothing on the bus.

One request of the civil registry is taken to APPROVED by the real inquiry; then agency and citizen commands
that must be refused are given over HTTP, and `desk.requests` is checked to have received nothing for them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from shared.domain.tracking_code import TrackingCodeGenerator
from testkit.data import submission
from testkit.harness import Stack
from testkit.kafka_tools import end_offsets
from tests.e2e.test_request_flow import lookup, wait_for
from tests.problems import assert_problem

CIVIL_REGISTRY = {"X-Agency-Key": "dev-key-civil-registry"}
JUDICIARY = {"X-Agency-Key": "dev-key-judiciary"}
SERVICE_ID = "birth-certificate-duplicate"
WRONG_COMPLAINT = "00000000-0000-0000-0000-000000000000"
RESOLUTION = {"service_id": SERVICE_ID, "resolution_fa": "پرونده بازبینی شد", "resolution_en": "The file was reviewed"}


def agency(stack: Stack, code: str, command: str, payload: dict[str, Any], key: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{stack.url('intake')}/api/v1/agency/requests/{code}/{command}", json=payload, headers=key, timeout=15
    )


def requests_end(stack: Stack) -> int:
    """How many records desk.requests holds, over all its partitions."""
    return sum(asyncio.run(end_offsets(stack.servers.kafka_bootstrap)).values())


def refused(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    problem = assert_problem(response, status, slug=slug)
    assert problem["title_fa"] and problem["title"]
    return problem


@pytest.fixture(scope="module")
def approved(stack: Stack) -> tuple[str, str]:
    """A request of the civil registry, APPROVED by the inquiry, with its applicant's national ID."""
    body = submission()
    nid = body["applicant"]["national_id"]
    response = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15)
    assert response.status_code == 202, response.text
    code = response.json()["tracking_code"]
    wait_for(lambda: (found := lookup(stack, code, nid)) and found["status"] == "APPROVED", timeout_s=40)
    return code, nid


def test_refused_agency_commands_answer_at_once_and_publish_nothing(stack: Stack, approved: tuple[str, str]) -> None:
    code, nid = approved
    before = requests_end(stack)

    # A second decision on an approved request: 409 naming the state, in both languages.
    second = refused(
        agency(stack, code, "decision", {"service_id": SERVICE_ID, "decision": "approve"}, CIVIL_REGISTRY),
        409,
        "command-not-allowed",
    )
    assert second["detail"] == "The request is APPROVED."
    assert second["detail_fa"] == "وضعیت کنونی درخواست: تأییدشده"

    # Another agency, within its own scope, cannot write "refused" lines onto this request.
    other = {
        "service_id": "no-criminal-record-certificate",
        "decision": "reject",
        "reason_fa": "دلیل",
        "reason_en": "reason",
        "legal_basis": "art. 1",
    }
    refused(agency(stack, code, "decision", other, JUDICIARY), 403, "not-your-request")

    # A well-formed code nobody was given: 404 once tracking's projection has had its moment to catch up.
    unknown = TrackingCodeGenerator(key=b"e2e-unknown-codes", replica_id=15).next_code()
    refused(
        agency(stack, unknown, "decision", {"service_id": SERVICE_ID, "decision": "approve"}, CIVIL_REGISTRY),
        404,
        "request-not-found",
    )

    # A resolution with a made-up complaint id while no complaint is open.
    refused(
        agency(stack, code, f"complaints/{WRONG_COMPLAINT}/resolution", RESOLUTION, CIVIL_REGISTRY),
        409,
        "command-not-allowed",
    )

    # The citizen cannot cancel what is decided.
    cancel = httpx.post(f"{stack.url('intake')}/api/v1/requests/{code}/cancellation", json={"national_id": nid})
    refused(cancel, 409, "command-not-allowed")

    assert requests_end(stack) == before, "a refused command reached desk.requests"
    timeline = lookup(stack, code, nid)
    assert timeline is not None and all(entry["applied"] for entry in timeline["timeline"])


def test_only_the_open_complaint_can_be_resolved_and_only_once(stack: Stack, approved: tuple[str, str]) -> None:
    code, nid = approved
    filed = httpx.post(
        f"{stack.url('intake')}/api/v1/requests/{code}/complaint", json={"national_id": nid, "text": "Too slow"}
    )
    assert filed.status_code == 202, filed.text
    complaint_id = filed.json()["complaint_id"]
    wait_for(lambda: (found := lookup(stack, code, nid)) and found["complaint_open"], timeout_s=20)
    before = requests_end(stack)

    wrong = agency(stack, code, f"complaints/{WRONG_COMPLAINT}/resolution", RESOLUTION, CIVIL_REGISTRY)
    refused(wrong, 409, "complaint-not-open")
    assert requests_end(stack) == before, "a resolution of the wrong complaint reached desk.requests"

    right = agency(stack, code, f"complaints/{complaint_id}/resolution", RESOLUTION, CIVIL_REGISTRY)
    assert right.status_code == 202, right.text
    assert requests_end(stack) == before + 1
    wait_for(lambda: (found := lookup(stack, code, nid)) and not found["complaint_open"], timeout_s=20)

    # The same resolution again, once applied: refused, nothing more on the bus.
    again = agency(stack, code, f"complaints/{complaint_id}/resolution", RESOLUTION, CIVIL_REGISTRY)
    refused(again, 409, "command-not-allowed")
    assert requests_end(stack) == before + 1


def test_tracking_down_is_a_503_and_publishes_nothing(stack: Stack, approved: tuple[str, str]) -> None:
    code, _ = approved
    before = requests_end(stack)
    stack.signal("tracking")  # the last test of the module: the stack is not needed afterwards
    response = agency(stack, code, "decision", {"service_id": SERVICE_ID, "decision": "approve"}, CIVIL_REGISTRY)
    assert_problem(response, 503, slug="tracking-unavailable")
    assert response.headers["retry-after"] == "5"
    assert requests_end(stack) == before
