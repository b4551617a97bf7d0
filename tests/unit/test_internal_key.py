"""The service-to-service key on internal routes (tracking's request facts, notify's internal routes)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from shared.http import install_problem_handlers
from shared.problems import INTERNAL_KEY_HEADER, check_internal_key


def _client(expected: bytes) -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/internal/probe")
    async def probe(request: Request) -> dict[str, bool]:
        check_internal_key(request, expected)
        return {"ok": True}

    return TestClient(app)


@pytest.mark.parametrize("headers", [{}, {INTERNAL_KEY_HEADER: "wrong"}, {INTERNAL_KEY_HEADER: ""}])
def test_a_missing_or_wrong_key_is_the_same_401(headers: dict[str, str]) -> None:
    response = _client(b"the-key").get("/internal/probe", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_the_right_key_passes() -> None:
    assert _client(b"the-key").get("/internal/probe", headers={INTERNAL_KEY_HEADER: "the-key"}).status_code == 200


@pytest.mark.parametrize("headers", [{}, {INTERNAL_KEY_HEADER: ""}])
def test_no_key_configured_lets_nobody_in(headers: dict[str, str]) -> None:
    assert _client(b"").get("/internal/probe", headers=headers).status_code == 401
