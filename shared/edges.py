"""Every service's HTTP edge: security headers, CORS, request body limits, and /docs served from the service.

One function builds the FastAPI app of each service (`service_app`), so every service answers with the same
headers and limits and none loads anything from another host (the desk runs on closed networks).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from typing import Any, Final

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http import ProblemError, problem_response
from shared.problems import SHARED
from shared.settings import HttpEdgeSettings

SWAGGER_UI_PATH: Final = "/static/swagger-ui"

# JSON and everything else that is not a page: nothing may be loaded, framed or run from it.
API_CSP: Final = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The docs page: scripts and styles from this service only (no inline script); Swagger UI styles elements
# inline and draws icons as data: images.
DOCS_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Headers a browser page on an allowed origin may send and read.
CORS_REQUEST_HEADERS: Final = ["Content-Type", "Authorization", "Idempotency-Key", "X-Agency-Key"]
CORS_EXPOSED_HEADERS: Final = ["Retry-After"]
_BODY_TOO_LARGE: Final = SHARED["body-too-large"]


class SecurityHeadersMiddleware:
    """Adds the security headers to every response, and `Cache-Control: no-store` unless the route chose.

    Lookups, histories and commands carry personal data, so nothing is cached by default; a route whose answer
    is public (the catalog) sets its own Cache-Control.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                html = headers.get("content-type", "").startswith("text/html")
                headers["Content-Security-Policy"] = DOCS_CSP if html else API_CSP
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(StarletteHTTPException):
    """A request body past its route's limit; an HTTPException so FastAPI's body parsing lets it through."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(status_code=413)
        self.limit_bytes = limit_bytes

    def problem(self) -> ProblemError:
        """The 413 problem naming the limit."""
        return _BODY_TOO_LARGE.error(kib=max(1, self.limit_bytes // 1024))


class BodyLimitMiddleware:
    """Refuses a body past its route's limit with 413 problem+json, at the limit and never after reading it all.

    A declared Content-Length past the limit is refused before any byte is read; a chunked body is counted as
    it streams and reading stops at the first chunk past the limit.
    """

    def __init__(self, app: ASGIApp, *, default_bytes: int, limits: Mapping[str, int | None] | None = None) -> None:
        self.app = app
        self.default_bytes = default_bytes
        # Path prefix → limit, the longest matching prefix winning; None: the route bounds its own body (intake's
        # upload, whose limit and 413 name the file).
        self.limits = sorted((limits or {}).items(), key=lambda item: len(item[0]), reverse=True)

    def limit_for(self, path: str) -> int | None:
        """The body limit of a path (None: the route's own)."""
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.default_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            response = problem_response(BodyTooLarge(limit).problem().to_problem(scope["path"]))
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _docs_page(title: str) -> str:
    # No inline script: the page's CSP allows scripts from this service only (docs-init.js starts Swagger UI).
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{SWAGGER_UI_PATH}/swagger-ui.css">
<link rel="icon" type="image/png" href="{SWAGGER_UI_PATH}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{SWAGGER_UI_PATH}/swagger-ui-bundle.js"></script>
<script src="{SWAGGER_UI_PATH}/docs-init.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """/docs with the vendored Swagger UI (shared/static/swagger-ui), served by the service itself."""
    directory = files("shared") / "static" / "swagger-ui"
    app.mount(SWAGGER_UI_PATH, StaticFiles(directory=str(directory)), name="swagger-ui")
    page = _docs_page(f"{app.title} — API")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)


def install_edges(
    app: FastAPI, settings: HttpEdgeSettings, *, body_limits: Mapping[str, int | None] | None = None
) -> None:
    """Security headers, CORS (only the configured origins) and body limits on every response of `app`."""
    app.add_middleware(BodyLimitMiddleware, default_bytes=settings.max_body_bytes, limits=body_limits)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=CORS_EXPOSED_HEADERS,
        allow_credentials=False,
        max_age=600,
    )
    # Added last, so outermost: its headers are on every answer, the 413s and CORS refusals included.
    app.add_middleware(SecurityHeadersMiddleware)


def service_app(
    *, http: HttpEdgeSettings, body_limits: Mapping[str, int | None] | None = None, **fastapi_args: Any
) -> FastAPI:
    """A service's FastAPI app with its edges installed and /docs from vendored files (no ReDoc, no CDN)."""
    app = FastAPI(docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None, **fastapi_args)
    install_edges(app, http, body_limits=body_limits)
    install_docs(app)
    return app
