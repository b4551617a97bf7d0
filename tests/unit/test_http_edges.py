"""Every service's HTTP edge: security headers, CORS, body limits and a /docs page that loads nothing from
another host (shared/edges.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from services.identity.app import create_app as create_identity
from services.identity.settings import IdentitySettings
from services.inquiry.app import create_app as create_inquiry
from services.inquiry.settings import InquirySettings
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.tracking.app import create_app as create_tracking
from services.tracking.settings import TrackingSettings
from shared.settings import HttpEdgeSettings
from tests.asgi import asgi_client
from tests.problems import assert_problem

PORTAL = "https://portal.example.ir"
STRANGER = "https://evil.example.com"


def build(service: str, tmp_path: Path, http: HttpEdgeSettings | None = None) -> FastAPI:
    edge = http or HttpEdgeSettings()
    provider = TracerProvider()
    if service == "intake":
        return create_intake(IntakeSettings(http=edge), tracer_provider=provider)
    if service == "inquiry":
        return create_inquiry(InquirySettings(http=edge), tracer_provider=provider)
    if service == "tracking":
        url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
        return create_tracking(TrackingSettings(http=edge, database_url=url), tracer_provider=provider)
    if service == "identity":
        return create_identity(IdentitySettings(http=edge), tracer_provider=provider)
    return create_notify(
        NotifySettings(http=edge, database_url=f"sqlite+aiosqlite:///{tmp_path}/n.db"), tracer_provider=provider
    )


SERVICES = ("intake", "inquiry", "tracking", "notify", "identity")
# A route of each service that reads a JSON body.
JSON_ROUTES = {
    "intake": "/api/v1/requests",
    "tracking": "/api/v1/tracking/lookup",
    "notify": "/internal/v1/sign-in-codes",
    "identity": "/api/v1/identity/sign-in",
}


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return asgi_client(app, "http://desk")


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("service", SERVICES)
async def test_every_answer_carries_the_security_headers_and_no_store(service: str, tmp_path: Path) -> None:
    async with client_for(build(service, tmp_path)) as http:
        answers = [
            await http.get("/healthz"),
            await http.get("/no/such/route"),  # a problem+json answer too
            await http.get("/openapi.json"),
        ]
    for response in answers:
        assert_security_headers(response)
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert answers[1].status_code == 404


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value is not None:
                self.urls.append(value)
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


@pytest.mark.parametrize("service", SERVICES)
async def test_docs_are_served_from_the_service_itself(service: str, tmp_path: Path) -> None:
    async with client_for(build(service, tmp_path)) as http:
        page = await http.get("/docs")
        references = _References()
        references.feed(page.text)
        assets = [await http.get(url) for url in references.urls]
        redoc = await http.get("/redoc")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert_security_headers(page)
    policy = page.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", policy)
    assert script_src is not None and script_src.group(1).strip() == "'self'"  # no inline or remote script
    # Nothing from another host: every reference is a path on this service, and no script is inline.
    assert references.urls and all(url.startswith("/") and not url.startswith("//") for url in references.urls)
    assert not re.search(r"https?://", page.text)
    assert references.inline_scripts == 0
    assert [asset.status_code for asset in assets] == [200] * len(assets)
    assert any(url.endswith("swagger-ui-bundle.js") for url in references.urls)
    assert redoc.status_code == 404


@pytest.mark.parametrize("service", SERVICES)
async def test_cross_origin_calls_are_refused_by_default(service: str, tmp_path: Path) -> None:
    async with client_for(build(service, tmp_path)) as http:
        preflight = await http.options(
            "/healthz", headers={"Origin": STRANGER, "Access-Control-Request-Method": "POST"}
        )
        simple = await http.get("/healthz", headers={"Origin": STRANGER})
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code >= 400
    assert "access-control-allow-origin" not in simple.headers
    assert_security_headers(preflight)


@pytest.mark.parametrize("service", SERVICES)
async def test_configured_origins_may_call_from_a_browser(service: str, tmp_path: Path) -> None:
    app = build(service, tmp_path, HttpEdgeSettings(cors_allowed_origins=[PORTAL]))
    async with client_for(app) as http:
        allowed = await http.options(
            "/healthz",
            headers={
                "Origin": PORTAL,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        stranger = await http.get("/healthz", headers={"Origin": STRANGER})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == PORTAL
    assert "access-control-allow-origin" not in stranger.headers


def counting_body(chunks: int, size: int, sent: list[int]) -> Callable[[], AsyncIterator[bytes]]:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            sent.append(size)
            yield b" " * size

    return body


@pytest.mark.parametrize("service", sorted(JSON_ROUTES))
async def test_a_body_declared_past_the_limit_is_413_before_it_is_read(service: str, tmp_path: Path) -> None:
    sent: list[int] = []
    limit = HttpEdgeSettings().max_body_bytes
    async with client_for(build(service, tmp_path)) as http:
        response = await http.post(
            JSON_ROUTES[service],
            content=counting_body(160, 64 * 1024, sent)(),
            headers={"content-type": "application/json", "content-length": str(10 * 1024 * 1024)},
        )
    problem = assert_problem(response, 413, slug="body-too-large")
    assert_security_headers(response)
    assert str(limit // 1024) in problem["detail"] and "۶۴" in problem["detail_fa"]
    assert sum(sent) <= 64 * 1024  # at most what the client pushed before the answer; nothing was waited for


@pytest.mark.parametrize("service", sorted(JSON_ROUTES))
async def test_a_chunked_body_is_cut_off_at_the_limit(service: str, tmp_path: Path) -> None:
    sent: list[int] = []
    async with client_for(build(service, tmp_path)) as http:
        response = await http.post(
            JSON_ROUTES[service],
            content=counting_body(160, 16 * 1024, sent)(),  # 2.5 MB if it were all read
            headers={"content-type": "application/json"},
        )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, slug="body-too-large")
    assert len(sent) <= 6  # 64 KB is four chunks: reading stopped at the first one past it


async def test_a_body_within_the_limit_is_read_as_before(tmp_path: Path) -> None:
    async with client_for(build("tracking", tmp_path)) as http:
        response = await http.post("/api/v1/tracking/lookup", content=b"{" + b" " * 60_000 + b"}")
    assert response.status_code == 422  # read whole and refused for its fields, not its size


def test_the_413_is_documented_for_every_route(tmp_path: Path) -> None:
    for service in ("intake", "tracking"):
        openapi: dict[str, Any] = build(service, tmp_path).openapi()
        for path, operations in openapi["paths"].items():
            for operation in operations.values():
                assert "413" in operation["responses"], (service, path)
