"""The outside world notify talks to: an SMS gateway (Kavenegar's HTTP API) and an SMTP relay."""

from __future__ import annotations

import email.policy
import logging
import re
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol
from urllib.parse import quote

import aiosmtplib
import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter

from shared.kafka import scrub
from shared.rate_limits import PacedRate
from shared.telemetry import span_described_by_caller

log = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
SMS_GATEWAY_SENT = Counter("khedmat_notify_sms_gateway_sent_total", "SMS accepted, by gateway", ["gateway"])
SMS_GATEWAY_FAILURES = Counter(
    "khedmat_notify_sms_gateway_failures_total", "SMS sends that failed, by gateway", ["gateway"]
)
# Kavenegar answers 409 for "cannot answer right now"; 408/425/429 are the generic "try again later" codes.
_RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
_EMAIL_ADDRESS = re.compile(r"[^\s<>@\"']+@[^\s<>@\"']+")
# How a message goes on the wire. The modern policies (which aiosmtplib would use for an EmailMessage) fold
# a long non-ASCII Subject with the space between words outside the RFC 2047 encoded-words, where readers
# must drop it ("صدور المثنی" arrives as "صدورالمثنی"); compat32's folding keeps the space inside.
WIRE_POLICY = email.policy.compat32.clone(linesep="\r\n")


class SendError(Exception):
    """A message could not be handed over; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class SmsSendError(SendError):
    """The SMS gateway did not accept a message; the text never contains the API key or a full number."""


class EmailSendError(SendError):
    """The mail relay did not accept a message; the text never contains an email address."""


class SmsGateway(Protocol):
    """Sends one SMS and returns the provider's message id."""

    async def send(self, *, receptor: str, message: str, local_id: str) -> str: ...


class EmailSender(Protocol):
    """Sends one plain-text email and returns its Message-ID."""

    async def send(self, *, to: str, subject: str, body: str, message_key: str) -> str: ...


class _RedactSecret(logging.Filter):
    """Rewrites a log record so that a secret (here: a key inside a URL) never reaches a handler."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, REDACTED), None
        return True


class KavenegarSmsClient:
    """Sends SMS through a Kavenegar-style gateway: `POST {base}/v1/{api_key}/sms/send.json`, form fields."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        sender: str,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
        pace: PacedRate | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("the SMS API key is empty")
        self._api_key = api_key
        self._path_key = quote(api_key, safe="")
        self.sender = sender
        self.pace = pace
        # No redirects: a redirect would resend the key-bearing path to wherever the Location points.
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, follow_redirects=False, transport=transport)
        # httpx logs every request's full URL at INFO, and this URL carries the key.
        self._log_filters = [_RedactSecret(secret) for secret in {api_key, self._path_key}]
        for log_filter in self._log_filters:
            logging.getLogger("httpx").addFilter(log_filter)

    def redact(self, text: str) -> str:
        """Text with the API key and long digit runs (mobile numbers) masked, bounded in length."""
        return scrub(text.replace(self._api_key, REDACTED).replace(self._path_key, REDACTED))

    async def redact_span(self, span: Any, request: Any) -> None:
        """httpx instrumentation hook: the span's URL attributes without the key in the path."""
        url = self.redact(str(request.url))
        for name in ("url.full", "http.url"):
            if name in (getattr(span, "attributes", None) or {}):
                span.set_attribute(name, url)

    async def send(self, *, receptor: str, message: str, local_id: str) -> str:
        """Hand one SMS to the gateway; `local_id` lets the gateway drop a resend of the same notification."""
        fields = {"receptor": receptor, "message": message, "sender": self.sender, "localid": local_id}
        if self.pace is not None:
            await self.pace.acquire()  # the provider's contract rate, shared by every replica
        # `from None` everywhere: a chained httpx exception would print the key-bearing URL in tracebacks.
        try:
            response = await self.http.post(f"/v1/{self._path_key}/sms/send.json", data=fields)
        except httpx.TimeoutException as error:
            raise SmsSendError(f"sms gateway timed out ({type(error).__name__})", retryable=True) from None
        except httpx.TransportError as error:
            reason = self.redact(str(error))
            raise SmsSendError(f"sms gateway unreachable ({type(error).__name__}: {reason})", retryable=True) from None
        except httpx.HTTPError as error:
            raise SmsSendError(f"sms request failed ({type(error).__name__})", retryable=False) from None
        return self._message_id(response)

    def _message_id(self, response: httpx.Response) -> str:
        status = response.status_code
        payload: Any
        try:
            payload = response.json()
        except ValueError:
            payload = None
        provider_status: Any = None
        provider_message = ""
        if isinstance(payload, dict) and isinstance(payload.get("return"), dict):
            provider_status = payload["return"].get("status")
            provider_message = str(payload["return"].get("message") or "")
        if status != 200 or provider_status not in (200, None):
            code = provider_status if isinstance(provider_status, int) else status
            retryable = status >= 500 or status in _RETRYABLE_STATUSES or code in _RETRYABLE_STATUSES
            detail = self.redact(provider_message)[:200] if provider_message else ""
            raise SmsSendError(f"sms gateway answered {status}/{code}: {detail}".rstrip(": "), retryable=retryable)
        entries = payload.get("entries") if isinstance(payload, dict) else None
        if not entries or not isinstance(entries, list) or not isinstance(entries[0], dict):
            # Accepted but unreadable: the message may be out, so a resend must rely on the gateway's localid.
            raise SmsSendError("sms gateway answered 200 without a message id", retryable=True)
        message_id = entries[0].get("messageid")
        if message_id is None:
            raise SmsSendError("sms gateway answered 200 without a message id", retryable=True)
        return str(message_id)

    async def aclose(self) -> None:
        """Close the connection pool and stop filtering httpx's log."""
        await self.http.aclose()
        for log_filter in self._log_filters:
            logging.getLogger("httpx").removeFilter(log_filter)


class FailoverSmsGateway:
    """SMS through the first gateway that takes it, in order of preference; the one that last worked goes first.

    A gateway that fails hands the message to the next (same `local_id`, so a provider that did accept it
    after all drops nothing twice on its own side). Sticking to the gateway that last succeeded keeps a dead
    primary from costing every message a failed call; every `retry_primary_s` the first gateway is tried
    first again, so traffic returns to it once it is back. When every gateway fails, the error is retryable
    if any failure was.
    """

    def __init__(
        self,
        gateways: list[SmsGateway],
        *,
        names: list[str] | None = None,
        retry_primary_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not gateways:
            raise ValueError("at least one SMS gateway is needed")
        self.gateways = gateways
        self.names = names or [f"gateway-{index}" for index in range(len(gateways))]
        self.retry_primary_s = retry_primary_s
        self.clock = clock
        self._preferred = 0
        self._preferred_since = clock()

    def _order(self) -> list[int]:
        if self._preferred and self.clock() - self._preferred_since >= self.retry_primary_s:
            self._preferred = 0
        rest = [index for index in range(len(self.gateways)) if index != self._preferred]
        return [self._preferred, *rest]

    async def send(self, *, receptor: str, message: str, local_id: str) -> str:
        failures: list[SmsSendError] = []
        for index in self._order():
            try:
                message_id = await self.gateways[index].send(receptor=receptor, message=message, local_id=local_id)
            except SmsSendError as error:
                SMS_GATEWAY_FAILURES.labels(self.names[index]).inc()
                failures.append(error)
                continue
            if index != self._preferred:
                log.warning("SMS failed over to %s", self.names[index])
                self._preferred, self._preferred_since = index, self.clock()
            SMS_GATEWAY_SENT.labels(self.names[index]).inc()
            return message_id
        summary = "; ".join(str(error) for error in failures)
        raise SmsSendError(f"every SMS gateway failed: {summary}", retryable=any(e.retryable for e in failures))

    async def aclose(self) -> None:
        for gateway in self.gateways:
            close = getattr(gateway, "aclose", None)
            if close is not None:
                await close()


def redact_addresses(text: str) -> str:
    """Text with email addresses and long digit runs masked, bounded in length (for errors and logs)."""
    return scrub(_EMAIL_ADDRESS.sub("<address>", text))


class SmtpEmailSender:
    """Sends plain-text UTF-8 email through one SMTP relay, one connection per message."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        mail_from: str,
        starttls: bool,
        timeout_s: float,
        username: str | None = None,
        password: str | None = None,
        tracer: trace.Tracer | None = None,
        pace: PacedRate | None = None,
    ) -> None:
        self.pace = pace
        self.mail_from = mail_from
        self.tracer = tracer or trace.get_tracer("notify")
        self.domain = mail_from.rpartition("@")[2] or "localhost"
        # How each message reaches the relay (aiosmtplib.send's options); one connection per message.
        self.relay: dict[str, Any] = {
            "hostname": host,
            "port": port,
            "start_tls": starttls,
            "use_tls": False,
            "timeout": timeout_s,
            "username": username,
            "password": password,
        }

    def build(self, *, to: str, subject: str, body: str, message_key: str) -> EmailMessage:
        """The message: From, To, Subject (RFC 2047 encoded when needed), Date and a stable Message-ID."""
        message = EmailMessage()
        message["From"] = self.mail_from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        # Stable per notification: a resend after a lost reply carries the same id, so mail clients fold them.
        message["Message-ID"] = f"<{message_key}@{self.domain}>"
        # base64 keeps a Persian body 7-bit clean (no reliance on 8BITMIME) and smaller than quoted-printable.
        message.set_content(body, subtype="plain", charset="utf-8", cte="7bit" if body.isascii() else "base64")
        return message

    async def send(self, *, to: str, subject: str, body: str, message_key: str) -> str:
        """Send one email; raises EmailSendError (retryable on 4xx and connection trouble)."""
        message = self.build(to=to, subject=subject, body=body, message_key=message_key)
        if self.pace is not None:
            await self.pace.acquire()
        attributes: dict[str, str | int] = {
            "server.address": self.relay["hostname"],
            "server.port": self.relay["port"],
            "network.transport": "tcp",
        }
        with span_described_by_caller(self.tracer, "smtp send", kind=SpanKind.CLIENT, attributes=attributes) as span:
            try:
                await aiosmtplib.send(
                    message.as_bytes(policy=WIRE_POLICY), sender=self.mail_from, recipients=[to], **self.relay
                )
            except Exception as error:
                failure = _classify_smtp_error(error)
                span.set_attribute("error.type", type(error).__name__)
                span.set_status(Status(StatusCode.ERROR, str(failure)))
                raise failure from None
        return str(message["Message-ID"])


def _classify_smtp_error(error: Exception) -> EmailSendError:
    name = type(error).__name__
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        retryable = any(400 <= code < 500 for code in codes)
        return EmailSendError(f"smtp refused the recipient ({', '.join(map(str, codes))})", retryable=retryable)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        detail = redact_addresses(f"{error.code} {error.message}")[:200]
        return EmailSendError(f"smtp {name}: {detail}", retryable=400 <= error.code < 500)
    # The relay lacks what the settings demand (STARTTLS, SMTPUTF8, AUTH): no retry fixes configuration.
    # aiosmtplib reports a missing STARTTLS as a bare SMTPException, hence the text test.
    if isinstance(error, aiosmtplib.SMTPNotSupported) or "not supported" in str(error):
        return EmailSendError(f"smtp {name}: {redact_addresses(str(error))[:200]}", retryable=False)
    if isinstance(error, aiosmtplib.SMTPException | OSError | TimeoutError):
        return EmailSendError(f"smtp {name}: {redact_addresses(str(error))[:200]}", retryable=True)
    return EmailSendError(f"smtp {name}", retryable=False)
