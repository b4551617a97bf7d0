"""A simulated SMS provider with a Kavenegar-style API that keeps every accepted message in memory."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import httpx
from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sandbox._common import MessageLog, new_app, utc_now

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "sandbox-sms-key"
DEFAULT_SENDER = "10004346"
MAX_RECEPTORS = 200
MAX_MESSAGE_CHARS = 900
_QUEUED = 1
_QUEUED_TEXT = "در صف ارسال"
# The forms Iranian providers accept for a mobile number: 0912..., 912..., 98912..., +98912..., 0098912...
_RECEPTOR = re.compile(r"(?:\+98|0098|98|0)?9[0-9]{9}")


class SmsMessage(BaseModel):
    """One message the gateway accepted, as `GET /messages` lists it."""

    model_config = ConfigDict(frozen=True)

    messageid: int
    receptor: str
    message: str
    sender: str
    localid: str | None
    received_at: datetime


class SmsOutbox(MessageLog[SmsMessage]):
    """In-memory record of every message the gateway accepted, oldest first."""

    def __init__(self, first_message_id: int = 100_000_001) -> None:
        super().__init__()
        self._next_id = first_message_id
        self._by_localid: dict[tuple[str, str, str], SmsMessage] = {}

    def add(self, *, receptor: str, message: str, sender: str, localid: str | None) -> SmsMessage:
        """Record an accepted message under a new message id; a resend with the same localid returns the first.

        Kavenegar drops a message whose localid it has seen, answering with the earlier one: that is what lets
        a client resend after a lost answer without texting anyone twice. (Keyed here also by receptor and
        text, so different clients sharing one sandbox with colliding row-id localids never meet.)
        """
        if localid is not None:
            earlier = self._by_localid.get((receptor, localid, message))
            if earlier is not None:
                return earlier
        # Ids keep growing across clear() so a late delivery receipt never names a different message.
        accepted = SmsMessage(
            messageid=self._next_id,
            receptor=receptor,
            message=message,
            sender=sender,
            localid=localid,
            received_at=utc_now(),
        )
        self._next_id += 1
        self._messages.append(accepted)
        if localid is not None:
            self._by_localid[(receptor, localid, message)] = accepted
        return accepted

    def clear(self) -> None:
        """Forget every recorded message."""
        super().clear()
        self._by_localid.clear()


class SmsFaults(BaseModel):
    """How the gateway misbehaves; the all-defaults value means healthy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    down: bool = False


class _FaultState:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.faults = SmsFaults()
        self.dice = random.Random(seed)

    def reset(self) -> None:
        self.faults = SmsFaults()
        self.dice = random.Random(self.seed)


def _provider_error(status: int, message: str) -> JSONResponse:
    # Kavenegar mirrors its own status code in the HTTP status, including odd ones such as 411.
    return JSONResponse(status_code=status, content={"return": {"status": status, "message": message}})


async def _read_fields(request: Request) -> dict[str, str] | None:
    """Query string, then JSON or form body, merged; None when the body cannot be parsed."""
    fields = {key: value for key, value in request.query_params.items()}
    if request.method != "POST":
        return fields
    content_type = request.headers.get("content-type", "")
    if "json" in content_type:
        try:
            payload = json.loads(await request.body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(payload, dict):
            return None
        fields.update({str(k): str(v) for k, v in payload.items() if v is not None})
    elif content_type:
        form = await request.form()
        fields.update({key: value for key, value in form.items() if isinstance(value, str)})
    return fields


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class _ReceiptPoster:
    """Posts delivery receipts to the client's webhook over one pooled client (made on first use, in the
    server's loop): a client per message would cost its SSL context, about 20 ms, on every SMS."""

    def __init__(self, url: str, transport: httpx.AsyncBaseTransport | None) -> None:
        self.url = url
        self.transport = transport
        self._client: httpx.AsyncClient | None = None

    async def post(self, messages: Iterable[SmsMessage]) -> None:
        """Report each message as delivered; failures are logged and dropped."""
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self.transport, timeout=5.0)
        for message in messages:
            receipt = {"messageid": message.messageid, "localid": message.localid, "status": "delivered"}
            try:
                response = await self._client.post(self.url, json=receipt)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                log.warning("delivery receipt for message %s not accepted: %r", message.messageid, exc)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


@dataclass(frozen=True)
class _SendOrder:
    """One valid send request: the receptors, each with its localid, and the text they get."""

    receptors: list[str]
    localids: list[str | None]
    message: str
    sender: str


def _check_send(receptors: list[str], message: str) -> JSONResponse | None:
    """The provider's error for receptors and message it would refuse, in Kavenegar's order; None when valid."""
    if not receptors:
        return _provider_error(400, "receptor is required")
    if not message.strip():
        return _provider_error(400, "message is required")
    if len(receptors) > MAX_RECEPTORS:
        return _provider_error(414, f"at most {MAX_RECEPTORS} receptors per request")
    if len(message) > MAX_MESSAGE_CHARS:
        return _provider_error(413, f"message longer than {MAX_MESSAGE_CHARS} characters")
    invalid = [receptor for receptor in receptors if not _RECEPTOR.fullmatch(receptor)]
    if invalid:
        return _provider_error(411, f"invalid receptor: {', '.join(invalid)}")
    return None


def _localids(raw_localid: str | None, receptors: list[str]) -> list[str | None] | None:
    """One localid per receptor (None each when none was given); None when the counts do not match."""
    if raw_localid is None:
        return [None] * len(receptors)
    if len(receptors) == 1:
        return [raw_localid]
    localids: list[str | None] = list(_split(raw_localid))
    return localids if len(localids) == len(receptors) else None


def _parse_send(fields: dict[str, str], default_sender: str) -> _SendOrder | JSONResponse:
    """The send order the request fields describe, or the provider's error for them."""
    receptors = _split(fields.get("receptor", ""))
    message = fields.get("message", "")
    problem = _check_send(receptors, message)
    if problem is not None:
        return problem
    localids = _localids(fields.get("localid") or None, receptors)
    if localids is None:
        return _provider_error(400, "localid count must match receptor count")
    return _SendOrder(receptors, localids, message, fields.get("sender") or default_sender)


def _entry(sms: SmsMessage) -> dict[str, object]:
    """One accepted message as Kavenegar's send answer lists it: queued, free."""
    return {
        "messageid": sms.messageid,
        "message": sms.message,
        "status": _QUEUED,
        "statustext": _QUEUED_TEXT,
        "sender": sms.sender,
        "receptor": sms.receptor,
        "date": int(sms.received_at.timestamp()),
        "cost": 0,
        "localid": sms.localid,
    }


async def _fault(state: _FaultState) -> JSONResponse | None:
    """Apply the configured latency, then the outage answer when the gateway is down or the dice say fail."""
    faults = state.faults
    # Roll every time, so the dice sequence depends only on how many sends came before.
    roll = state.dice.random()
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if faults.down or roll < faults.error_rate:
        return _provider_error(503, "service unavailable")
    return None


def _add_send_route(
    app: FastAPI,
    *,
    keys: frozenset[str],
    store: SmsOutbox,
    state: _FaultState,
    receipts: _ReceiptPoster | None,
    default_sender: str,
) -> None:
    """Mount `POST|GET /v1/{api_key}/sms/send.json`, which records valid messages and answers as Kavenegar does."""

    @app.api_route("/v1/{api_key}/sms/send.json", methods=["GET", "POST"], response_model=None)
    async def send(api_key: str, request: Request, background: BackgroundTasks) -> JSONResponse:
        outage = await _fault(state)
        if outage is not None:
            return outage
        if api_key not in keys:
            return _provider_error(401, "invalid api key")
        fields = await _read_fields(request)
        if fields is None:
            return _provider_error(400, "invalid request body")
        order = _parse_send(fields, default_sender)
        if isinstance(order, JSONResponse):
            return order
        accepted = [
            store.add(receptor=receptor, message=order.message, sender=order.sender, localid=localid)
            for receptor, localid in zip(order.receptors, order.localids, strict=True)
        ]
        if receipts is not None:
            background.add_task(receipts.post, accepted)
        entries = [_entry(sms) for sms in accepted]
        return JSONResponse({"return": {"status": 200, "message": "ok"}, "entries": entries})


def _add_inspection_routes(app: FastAPI, store: SmsOutbox, state: _FaultState) -> None:
    """Mount `/messages` (what was sent) and `/control/faults` (how the gateway misbehaves) for tests."""

    @app.get("/messages")
    async def list_messages(receptor: str | None = None) -> list[SmsMessage]:
        return [sms for sms in store.list() if receptor is None or sms.receptor == receptor]

    @app.delete("/messages", status_code=204)
    async def clear_messages() -> Response:
        store.clear()
        return Response(status_code=204)

    @app.get("/control/faults")
    async def get_faults() -> SmsFaults:
        return state.faults

    @app.put("/control/faults")
    async def set_faults(faults: SmsFaults) -> SmsFaults:
        state.faults = faults
        return faults

    @app.delete("/control/faults", status_code=204)
    async def reset_faults() -> Response:
        state.reset()
        return Response(status_code=204)


def create_sms_gateway_app(
    *,
    api_keys: set[str] | None = None,
    receipt_url: str | None = None,
    outbox: SmsOutbox | None = None,
    default_sender: str = DEFAULT_SENDER,
    seed: int = 0,
    receipt_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The simulated SMS provider: `POST|GET /v1/{api_key}/sms/send.json`, `/messages` and `/control`."""
    keys = frozenset(api_keys if api_keys is not None else {DEFAULT_API_KEY})
    store = outbox if outbox is not None else SmsOutbox()
    state = _FaultState(seed)
    app = new_app("Khedmat sandbox: SMS gateway")
    receipts = _ReceiptPoster(receipt_url, receipt_transport) if receipt_url is not None else None
    if receipts is not None:
        app.router.add_event_handler("shutdown", receipts.aclose)
    app.state.outbox = store
    _add_send_route(app, keys=keys, store=store, state=state, receipts=receipts, default_sender=default_sender)
    _add_inspection_routes(app, store, state)
    return app
