"""Persian texts are wholly Persian: no Latin letters, numbers in Persian digits.

Two nets: every Persian string literal in services/ and shared/ (placeholders aside), and every Persian text
the code builds that can be enumerated (problems, field messages, timeline words per event type, refusals).
Allowed: tokens a reader must type or quote literally (header names, a complaint's UUID, a result's URL), and
identifiers the citizen sent that are echoed back in «…».
"""

from __future__ import annotations

import ast
import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi.exceptions import RequestValidationError

from services.intake.domain import validate_submission
from services.intake.service_documents import check_upload
from services.tracking.domain import Names, check_authority, describe
from services.tracking.domain_audit import AccessShown, describe_access
from services.tracking.domain_terms import catalog_names, catalog_terms
from shared.catalog import load_catalog
from shared.domain.state_machine import RequestState, Trigger, apply
from shared.domain.text import MULTILINE_CONTROL_MESSAGES, RULE_MESSAGES
from shared.edges import BodyTooLarge
from shared.events import (
    ActorKind,
    ComplaintFiled,
    ComplaintResolved,
    InquiryCompleted,
    Purpose,
    RequestDecided,
    ResourceKind,
    SlaBreached,
)
from shared.http import _VALIDATION_FA, validation_problem
from shared.problems import bus_unavailable, rate_limited, request_not_found
from testkit.tracking_stream import lifecycles

REPO = Path(__file__).resolve().parents[2]
PERSIAN_LETTER = re.compile(r"[\u0621-\u064a\u067e\u0686\u0698\u06a9\u06af\u06cc]")
LATIN = re.compile(r"[A-Za-z0-9]")
# Literal tokens a reader must send as they are.
ALLOWED_TOKENS = ("Idempotency-Key", "X-Agency-Key", "Authorization", "Bearer")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
URL = re.compile(r"https?://\S+?(?=\)|\s|$)")
PLACEHOLDER = re.compile(r"\{[a-z_]*\}")
ECHOED = re.compile(r"«[^»]*»")


def latin_in(text: str, *, echoed_ok: bool = False) -> list[str]:
    """The Latin letters and digits left in a Persian text once the allowed tokens are taken out."""
    for token in ALLOWED_TOKENS:
        text = text.replace(token, "")
    text = URL.sub("", UUID.sub("", PLACEHOLDER.sub("", text)))
    if echoed_ok:
        text = ECHOED.sub("", text)
    return LATIN.findall(text)


def _docstrings(tree: ast.AST) -> set[int]:
    owners = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, owners)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def persian_literals() -> Iterator[tuple[str, str]]:
    """(where, line) for each line of a string literal that is Persian text (its letters mostly Persian)."""
    for path in sorted([*REPO.glob("services/**/*.py"), *REPO.glob("shared/**/*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in docstrings:
                continue
            if node.value.startswith("^"):  # a pattern, not a text
                continue
            for line in node.value.splitlines():
                persian = len(PERSIAN_LETTER.findall(line))
                if persian and persian > len(re.findall(r"[A-Za-z]", line)):
                    yield f"{path.relative_to(REPO)}:{node.lineno}", line


def test_the_scanner_catches_what_the_newcomer_saw() -> None:
    assert latin_in("استعلام identity از civil-registry: تأیید شد.") == list("identitycivilregistry")
    assert latin_in("لطفاً 30 ثانیهٔ دیگر دوباره تلاش کنید.") == ["3", "0"]
    assert latin_in("شکایت ثبت شد (شناسه: 1b4e28ba-2fa1-11d2-883f-0016d3cca427).") == []


def test_every_persian_literal_in_the_code_is_wholly_persian() -> None:
    found = [(where, line) for where, line in persian_literals() if latin_in(line)]
    assert found == []


def test_problems_built_with_numbers_use_persian_digits() -> None:
    texts = [rate_limited(seconds).detail_fa for seconds in (1, 7, 30, 3600)]
    texts += [BodyTooLarge(limit).problem().detail_fa for limit in (1024, 64 * 1024, 10 * 1024 * 1024)]
    for problem in (bus_unavailable(), request_not_found(), rate_limited(45)):
        texts += [problem.title_fa, problem.detail_fa]
    assert "۴۵" in (rate_limited(45).detail_fa or "")
    assert [text for text in texts if text is None or latin_in(text)] == []


def _pydantic_error(error_type: str) -> dict[str, object]:
    ctx: dict[str, object] = {
        "min_length": 2,
        "max_length": 500,
        "gt": 0,
        "ge": 1.0,
        "lt": 10,
        "le": 99,
        "expected": "'sms' or 'email'",
        "pattern": "^[a-z]+$",
    }
    return {"type": error_type, "loc": ("body", "field"), "msg": "an English message", "ctx": ctx, "input": None}


def test_every_field_message_is_persian_and_names_its_rule() -> None:
    errors = [_pydantic_error(error_type) for error_type in _VALIDATION_FA]
    errors.append({"type": "json_invalid", "loc": ("body", 19), "msg": "JSON decode error", "ctx": {"error": "x"}})
    problem = validation_problem(RequestValidationError(errors), "/api/v1/requests")
    messages = [error.message_fa for error in problem.errors]
    assert [message for message in messages if latin_in(message)] == []
    assert "۵۰۰" in messages[list(_VALIDATION_FA).index("string_too_long")]
    json_error = problem.errors[-1]
    assert json_error.field == "body" and "۱۹" in json_error.message_fa and "19" in json_error.message_en
    ours = [fa for _, fa in RULE_MESSAGES.values()] + [MULTILINE_CONTROL_MESSAGES[1]]
    assert [message for message in ours if latin_in(message)] == []


def test_submission_and_upload_messages_are_persian() -> None:
    catalog = load_catalog()
    messages: list[str] = []
    for service in catalog.all():
        outcome = validate_submission(
            service=service,
            national_id="123",
            mobile="12",
            email="not-an-address",
            birth_date="2999-99-99",
            language="fa",
            fields={field.name: "x" * (field.max_length + 1) for field in service.fields} | {"نامعلوم": "x"},
            today=date(2025, 6, 1),
            notification_channels=["email"],
        )
        assert isinstance(outcome, list)
        messages += [error.message_fa for error in outcome]
        messages += [field.rule.fa for field in service.fields]
        for requirement in service.required_documents:
            for data in (b"", b"plain text, not a document" * 100_000):
                refused = check_upload(data, requirement)
                assert isinstance(refused, list)
                messages += [error.message_fa for error in refused]
    assert messages
    assert [message for message in messages if latin_in(message, echoed_ok=True)] == []


def test_every_timeline_text_is_persian_whatever_the_event() -> None:
    catalog = load_catalog()
    terms = catalog_terms(catalog)
    names = terms("birth-certificate-duplicate", 1)
    assert names is not None
    # Complaint references are UUIDs (intake makes them); the test stream's short ones stand in for them.
    events = [
        event.model_copy(update={"complaint_id": str(uuid.UUID(int=n))}) if isinstance(event, ComplaintFiled) else event
        for n, event in enumerate(lifecycles(300, seed=7))
    ]
    first = events[0]
    events.append(
        SlaBreached(
            tracking_code=first.tracking_code,
            event_id="00000000-0000-4000-8000-000000000001",
            occurred_at=datetime(2025, 6, 10, tzinfo=UTC),
            due_on=date(2025, 6, 9),
            duration_working_days=5,
        )
    )
    kinds = {type(event) for event in events}
    assert {InquiryCompleted, RequestDecided, ComplaintFiled, ComplaintResolved, SlaBreached} <= kinds
    texts = []
    for event in events:
        for state in (None, *RequestState):
            text = describe(event, state, names.names)
            texts += [t for t in (text.detail_fa, text.waiting_for_fa) if t]
    assert [text for text in texts if latin_in(text)] == []
    inquiry = next(event for event in events if isinstance(event, InquiryCompleted))
    assert "سازمان ثبت احوال کشور" in (describe(inquiry, None, names.names).detail_fa or "")


def test_refusals_are_persian() -> None:
    catalog = load_catalog()
    names = catalog_terms(catalog)("birth-certificate-duplicate", 1)
    assert names is not None
    reasons = [
        outcome.reason_fa
        for state in (None, *RequestState)
        for trigger in Trigger
        if not hasattr(outcome := apply(state, trigger), "target") and hasattr(outcome, "reason_fa")
    ]
    decided = next(event for event in lifecycles(50, seed=3) if isinstance(event, RequestDecided))
    for agency, service in (("tax", decided.service_id), (decided.agency, "tax-clearance-certificate")):
        refusal = check_authority(decided, agency=agency, service_id=service, names=names.names)
        assert refusal is not None
        reasons.append(refusal.reason_fa)
    refusal = check_authority(decided, agency="tax", service_id=decided.service_id, names=Names())
    assert refusal is not None
    reasons.append(refusal.reason_fa)
    assert len(reasons) > 50
    assert [reason for reason in reasons if latin_in(reason)] == []


@pytest.mark.parametrize("seed", [1, 2])
def test_rate_limit_texts_for_any_wait_are_persian(seed: int) -> None:
    rng = random.Random(seed)
    assert all(not latin_in(rate_limited(rng.randint(1, 100_000)).detail_fa or "x") for _ in range(200))


def test_every_line_of_who_looked_is_persian() -> None:
    names = catalog_names(load_catalog())
    agencies = [*names.agencies, "an-agency-this-build-does-not-know"]
    texts = []
    for kind, actor, organisation in [
        *((ActorKind.AGENCY.value, agency, agency) for agency in agencies),
        *((ActorKind.AGENCY_STAFF.value, None, agency) for agency in agencies),
        (ActorKind.CITIZEN.value, "self", "desk"),
        (ActorKind.OPERATOR.value, None, "office-1234"),
        (ActorKind.SERVICE.value, "internal-key-holder", "desk"),
        ("a-kind-this-build-does-not-know", "x", "desk"),
    ]:
        for resource_kind in [*ResourceKind, "unknown"]:
            for purpose in [*Purpose, "unknown"]:
                access = AccessShown(
                    seq=1,
                    occurred_at=datetime(2026, 3, 1, tzinfo=UTC),
                    actor_kind=kind,
                    actor=actor,
                    role="reviewer",
                    organisation=organisation,
                    purpose=str(purpose),
                    resource_kind=str(resource_kind),
                    resource="13160-00012-42902",
                )
                texts.append(describe_access(access, names)[0])
    assert len(texts) > 100
    assert [text for text in texts if latin_in(text)] == []
