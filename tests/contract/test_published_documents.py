"""The AsyncAPI and OpenAPI documents in docs/api are the ones the code generates (regenerate with
`python -m tools.apidocs` after changing an event or a route)."""

from __future__ import annotations

import json

import pytest

from shared.events import InquiryCompleted, RequestSubmitted, StatusChanged, VerificationCompleted
from tools.apidocs import DOCS_DIR, build_documents, render

DOCUMENTS = build_documents()


@pytest.mark.parametrize("file_name", sorted(DOCUMENTS))
def test_committed_document_matches_the_code(file_name: str) -> None:
    committed = (DOCS_DIR / file_name).read_text(encoding="utf-8")
    assert committed == render(DOCUMENTS[file_name]), f"docs/api/{file_name} is stale: run python -m tools.apidocs"


def test_every_event_on_the_bus_is_documented_with_its_schema() -> None:
    text = json.dumps([DOCUMENTS[name] for name in DOCUMENTS if name.startswith("asyncapi-")])
    for event in (RequestSubmitted, InquiryCompleted, VerificationCompleted, StatusChanged):
        assert event.__name__ in text
        for field in event.model_fields:
            assert f'"{field}"' in text, f"{event.__name__}.{field} missing from the AsyncAPI documents"


def test_submission_api_documents_its_problem_answers() -> None:
    responses = DOCUMENTS["openapi-intake.json"]["paths"]["/api/v1/requests"]["post"]["responses"]
    assert {"202", "404", "422", "503"} <= set(responses)
    assert "application/problem+json" in responses["503"]["content"]
