"""An SMTP server that accepts all mail and keeps it in memory, plus an HTTP app to read it back."""

from __future__ import annotations

import asyncio
import email
import hmac
import logging
import weakref
from collections.abc import Mapping
from datetime import datetime
from email import policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict

from sandbox._common import MessageLog, bind_tcp_socket, new_app, socket_port, utc_now

log = logging.getLogger(__name__)


class ReceivedEmail(BaseModel):
    """One message the sink accepted, with headers and bodies decoded."""

    model_config = ConfigDict(frozen=True)

    id: int
    mail_from: str
    """Envelope sender (MAIL FROM)."""
    rcpt_to: list[str]
    """Envelope recipients (RCPT TO), which include Bcc recipients that no header shows."""
    from_header: str | None
    to_header: str | None
    subject: str
    text: str | None
    html: str | None
    message_id: str | None
    size: int
    received_at: datetime


def _part_text(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if not isinstance(part, EmailMessage) or part.get_content_type() != f"text/{subtype}":
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        # An unknown or lying charset must not cost us the message; show what we can.
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
    if not isinstance(content, str):
        return None
    # SMTP carries CRLF line ends; readers of the sink want ordinary Python text.
    return content.replace("\r\n", "\n")


def _header(message: EmailMessage, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else str(value)


class MailStore(MessageLog[ReceivedEmail]):
    """In-memory record of every message the SMTP sink accepted, oldest first."""

    def __init__(self) -> None:
        super().__init__()
        self._next_id = 1

    def add_raw(self, *, mail_from: str, rcpt_to: list[str], raw: bytes) -> ReceivedEmail:
        """Parse a raw RFC 5322 message and record it."""
        # policy.default decodes RFC 2047 encoded words in headers and transfer encodings in bodies.
        parsed = email.message_from_bytes(raw, policy=policy.default)
        received = ReceivedEmail(
            id=self._next_id,
            mail_from=mail_from,
            rcpt_to=list(rcpt_to),
            from_header=_header(parsed, "from"),
            to_header=_header(parsed, "to"),
            subject=_header(parsed, "subject") or "",
            text=_part_text(parsed, "plain"),
            html=_part_text(parsed, "html"),
            message_id=_header(parsed, "message-id"),
            size=len(raw),
            received_at=utc_now(),
        )
        self._next_id += 1
        self._messages.append(received)
        return received


class _SinkHandler:
    """aiosmtpd handler that hands every message to a MailStore."""

    def __init__(self, store: MailStore) -> None:
        self.store = store

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if raw is None:
            content = envelope.content or b""
            raw = content.encode("utf-8") if isinstance(content, str) else content
        try:
            self.store.add_raw(mail_from=envelope.mail_from or "", rcpt_to=envelope.rcpt_tos, raw=raw)
        except Exception:
            # A real relay would bounce it later; telling the client now makes the failure visible.
            log.exception("could not store message from %s", envelope.mail_from)
            return "451 Requested action aborted: local error in processing"
        return "250 Message accepted for delivery"


class SmtpSink:
    """An aiosmtpd SMTP server on the running asyncio loop that records every message in a MailStore.

    It accepts any sender and recipient. AUTH PLAIN/LOGIN is offered without TLS and accepts any
    credentials, unless `credentials` (user -> password) is given, in which case only those pass.
    """

    def __init__(
        self,
        store: MailStore,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str = "smtp.sandbox.local",
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.host = host
        self.requested_port = port
        self.hostname = hostname
        self.credentials = dict(credentials) if credentials is not None else None
        self._handler = _SinkHandler(store)
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()

    @property
    def port(self) -> int:
        """The port the server listens on (known once started, also when started on port 0)."""
        if self._port is None:
            raise RuntimeError("SMTP sink not started")
        return self._port

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if self.credentials is None:
            return AuthResult(success=True)
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        expected = self.credentials.get(auth_data.login.decode("utf-8", "replace"))
        ok = expected is not None and hmac.compare_digest(expected.encode("utf-8"), auth_data.password)
        return AuthResult(success=ok, handled=False)

    def _new_connection(self) -> SMTP:
        protocol = SMTP(
            self._handler,
            hostname=self.hostname,
            enable_SMTPUTF8=True,
            authenticator=self._authenticate,
            # The sink never offers TLS, so AUTH must be allowed in the clear for clients that log in.
            auth_require_tls=False,
            loop=asyncio.get_running_loop(),
        )
        self._connections.add(protocol)
        return protocol

    async def start(self) -> None:
        """Bind and start accepting connections on the current event loop."""
        if self._server is not None:
            raise RuntimeError("SMTP sink already started")
        # Binding one socket ourselves keeps port 0 meaning a single port, even for names such as
        # "localhost" that resolve to both IPv4 and IPv6.
        sock = bind_tcp_socket(self.host, self.requested_port)
        try:
            self._server = await asyncio.get_running_loop().create_server(self._new_connection, sock=sock)
        except BaseException:
            sock.close()
            raise
        self._port = socket_port(sock)

    async def stop(self) -> None:
        """Stop listening and close open client connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for protocol in list(self._connections):
            if protocol.transport is not None:
                protocol.transport.close()
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def create_smtp_sink_http_app(store: MailStore) -> FastAPI:
    """HTTP access to the sink's MailStore: `GET /messages`, `DELETE /messages`, `GET /healthz`."""
    app = new_app("Khedmat sandbox: SMTP sink")
    app.state.store = store

    @app.get("/messages")
    async def list_messages(to: str | None = None) -> list[ReceivedEmail]:
        wanted = to.lower() if to is not None else None
        return [
            message
            for message in store.list()
            if wanted is None or wanted in (address.lower() for address in message.rcpt_to)
        ]

    @app.delete("/messages", status_code=204)
    async def clear_messages() -> Response:
        store.clear()
        return Response(status_code=204)

    return app
