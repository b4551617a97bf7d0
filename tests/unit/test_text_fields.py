"""Text fields refuse control characters and bidi overrides, with a 422 naming the field and the rule in both
languages (shared/domain/text.py), on every route that takes text from a citizen or an agency."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from services.intake.app import create_app
from services.intake.schemas import ComplaintIn, DecisionIn, SubmissionIn
from services.intake.settings import IntakeSettings
from shared.domain.identity import make_valid_national_id
from shared.domain.text import BIDI_CONTROL, CONTROL_CHARACTER, refused_character
from tests.problems import assert_problem
from tests.unit.test_persian_texts import latin_in

NATIONAL_ID = make_valid_national_id("001234567")
CODE = "123456789012345"
SERVICE_ID = "birth-certificate-duplicate"


def submission(**changes: Any) -> dict[str, Any]:
    applicant = {
        "national_id": NATIONAL_ID,
        "mobile": "09121234567",
        "email": "citizen@example.ir",
        "birth_date": "1990-01-31",
    }
    body: dict[str, Any] = {"service_id": SERVICE_ID, "applicant": applicant, "fields": {"reason": "lost"}}
    for key, value in changes.items():
        if key.startswith("applicant."):
            applicant[key.removeprefix("applicant.")] = value
        else:
            body[key] = value
    return body


@pytest.fixture
def app() -> FastAPI:
    return create_app(IntakeSettings(), tracer_provider=TracerProvider())


def assert_refused(response: httpx.Response, field: str, rule: str) -> None:
    problem = assert_problem(response, 422)
    [error] = [error for error in problem["errors"] if error["field"] == field]
    assert error["code"] == rule
    assert "not allowed" in error["message_en"]
    assert "پذیرفته نیست" in error["message_fa"] and not latin_in(error["message_fa"])


@pytest.mark.parametrize(
    ("text", "multiline", "rule"),
    [
        ("plain", False, None),
        ("دو\nسطر", True, None),
        ("tab\tand\r\n", True, None),
        ("دو\nسطر", False, CONTROL_CHARACTER),
        ("nul\x00", True, CONTROL_CHARACTER),
        ("escape\x1b[31m", True, CONTROL_CHARACTER),
        ("del\x7f", True, CONTROL_CHARACTER),
        ("c1\x85", True, CONTROL_CHARACTER),
        ("\u202egnp.exe", False, BIDI_CONTROL),
        ("isolate\u2066x\u2069", True, BIDI_CONTROL),
        ("نیم\u200cفاصله", False, None),  # ZWNJ is ordinary Persian writing
    ],
)
def test_the_rule(text: str, multiline: bool, rule: str | None) -> None:
    assert refused_character(text, multiline=multiline) == rule


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"fields": {"reason": "lost\x00"}}, "fields.reason", CONTROL_CHARACTER),
        ({"applicant.email": "a\x1b@example.ir"}, "applicant.email", CONTROL_CHARACTER),
        ({"applicant.national_id": "0012345679\x00"}, "applicant.national_id", CONTROL_CHARACTER),
        ({"service_id": "\u202ebirth-certificate-duplicate"}, "service_id", BIDI_CONTROL),
        ({"fields": {"reason": "lost\u202e"}}, "fields.reason", BIDI_CONTROL),
        ({"documents": {"identity_card": "ab\x00"}}, "documents.identity_card", CONTROL_CHARACTER),
    ],
)
async def test_submission_fields_refuse_them(
    client: httpx.AsyncClient, changes: dict[str, Any], field: str, rule: str
) -> None:
    assert_refused(await client.post("/api/v1/requests", json=submission(**changes)), field, rule)


def test_numbers_copied_from_a_phone_keep_their_bidi_marks_until_normalised() -> None:
    # Android wraps copied numbers in U+202A…U+202C; normalisation strips them (shared/domain/digits.py).
    SubmissionIn.model_validate(submission(**{"applicant.mobile": "\u202a0912 123 4567\u202c"}))


def test_several_lines_are_text_where_they_make_sense() -> None:
    assert ComplaintIn(national_id=NATIONAL_ID, text="بند ۱\nبند ۲").text == "بند ۱\nبند ۲"
    decision = DecisionIn(
        service_id=SERVICE_ID, decision="reject", reason_fa="الف\nب", reason_en="a\nb", legal_basis="x"
    )
    assert decision.reason_fa == "الف\nب"


@pytest.mark.parametrize(
    ("command", "payload", "field"),
    [
        ("complaint", {"national_id": NATIONAL_ID, "text": "unfair\x00"}, "text"),
        ("cancellation", {"national_id": NATIONAL_ID, "reason": "\x1b[2J"}, "reason"),
        ("correction", {"national_id": NATIONAL_ID, "fields": {"reason": "x\x00"}}, "fields.reason"),
        ("correction", {"national_id": NATIONAL_ID, "fields": {"reason": "x"}, "note": "\x07"}, "note"),
    ],
)
async def test_citizen_commands_refuse_them(
    client: httpx.AsyncClient, command: str, payload: dict[str, Any], field: str
) -> None:
    response = await client.post(f"/api/v1/requests/{CODE}/{command}", json=payload)
    assert_refused(response, field, CONTROL_CHARACTER)


@pytest.mark.parametrize(
    ("command", "payload", "field"),
    [
        ("decision", {"decision": "reject", "reason_fa": "رد\x00", "reason_en": "no", "legal_basis": "x"}, "reason_fa"),
        (
            "decision",
            {"decision": "reject", "reason_fa": "رد", "reason_en": "no", "legal_basis": "\x00"},
            "legal_basis",
        ),
        (
            "result",
            {"result": {"url": "https://example.ir/r"}, "summary_fa": "\u202eصادر شد", "summary_en": "issued"},
            "summary_fa",
        ),
    ],
)
async def test_agency_commands_refuse_them(
    client: httpx.AsyncClient, command: str, payload: dict[str, Any], field: str
) -> None:
    response = await client.post(
        f"/api/v1/agency/requests/{CODE}/{command}",
        json={"service_id": SERVICE_ID, **payload},
        headers={"X-Agency-Key": "dev-key-civil-registry"},
    )
    summary = payload.get("summary_fa", "")
    assert_refused(response, field, BIDI_CONTROL if "\u202e" in summary else CONTROL_CHARACTER)


async def test_complaint_resolutions_refuse_them(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"/api/v1/agency/requests/{CODE}/complaints/00000000-0000-4000-8000-000000000001/resolution",
        json={"service_id": SERVICE_ID, "resolution_fa": "پاسخ\x00", "resolution_en": "answer"},
        headers={"X-Agency-Key": "dev-key-civil-registry"},
    )
    assert_refused(response, "resolution_fa", CONTROL_CHARACTER)


async def test_upload_form_fields_refuse_them(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/documents",
        data={"service_id": SERVICE_ID, "kind": "identity_card\x00"},
        files={"file": ("a.pdf", b"%PDF-1.4", "application/pdf")},
    )
    assert_refused(response, "kind", CONTROL_CHARACTER)


async def test_malformed_json_names_the_body_and_the_position_in_words(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/requests", content=b'{"service_id": "x",}', headers={"content-type": "application/json"}
    )
    problem = assert_problem(response, 422)
    [error] = problem["errors"]
    assert error["field"] == "body" and error["code"] == "json_invalid"
    assert error["message_en"] == "The request body is not valid JSON (it breaks at character 19)."
    assert "۱۹" in error["message_fa"] and not latin_in(error["message_fa"])
