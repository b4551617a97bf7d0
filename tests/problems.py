"""The one check of an RFC 9457 problem answer that every API test uses."""

from __future__ import annotations

from typing import Any

import httpx

from shared.http import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE


def assert_problem(
    response: httpx.Response,
    status: int,
    *,
    slug: str | None = None,
    field: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """A problem+json answer with this status, titles in English and Persian, and (when given) its type and the
    first field at fault."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["title"] and problem["title_fa"]
    assert problem["type"].startswith(PROBLEM_TYPE_BASE)
    if slug is not None:
        assert problem["type"] == PROBLEM_TYPE_BASE + slug
    if field is not None or code is not None:
        first = problem["errors"][0]
        assert (first["field"], first["code"]) == (field, code)
        assert first["message_fa"] and first["message_en"]
    return problem
