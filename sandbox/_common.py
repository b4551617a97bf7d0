"""Small helpers shared by the sandbox servers."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def sha256_int(text: str) -> int:
    """The SHA-256 digest of a UTF-8 string as an integer, the root of all sandbox data."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def new_app(title: str) -> FastAPI:
    """A FastAPI app with the settings every sandbox server shares, including `GET /healthz`."""
    # The simulated systems live outside Khedmat, so their requests must not show up in our traces or
    # metrics even when a test process has configured global OpenTelemetry providers.
    app = FastAPI(
        title=title,
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=422,
            content={"error": "invalid_request", "detail": jsonable_encoder(exc.errors())},
        )

    @app.get("/healthz", include_in_schema=False)
    async def _healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def bind_tcp_socket(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket bound to host:port (0 picks a free port), ready for asyncio to listen on."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restarted sandbox reuse its fixed ports while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def socket_port(sock: socket.socket) -> int:
    """The local port a bound socket ended up on."""
    port: int = sock.getsockname()[1]
    return port


def url_host(host: str) -> str:
    """A host as it must appear in a URL (IPv6 literals need brackets)."""
    return f"[{host}]" if ":" in host else host


_Message = TypeVar("_Message")


class MessageLog(Generic[_Message]):
    """In-memory record of every message a simulated server accepted, oldest first."""

    def __init__(self) -> None:
        self._messages: list[_Message] = []

    def list(self) -> list[_Message]:
        """Every recorded message, newest last."""
        return list(self._messages)

    def clear(self) -> None:
        """Forget every recorded message."""
        self._messages.clear()

    async def wait_for(self, predicate: Callable[[_Message], bool]) -> _Message:
        """The first recorded message matching predicate, waiting for it; bound it with asyncio.timeout."""
        while True:
            for message in self._messages:
                if predicate(message):
                    return message
            # Polling rather than an asyncio.Condition keeps the store usable from any event loop.
            await asyncio.sleep(0.02)
