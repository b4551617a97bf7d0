"""Outbound edges of intake: tracking's status lookup, used to prove that a citizen owns a request, and tracking's
internal route, which gives the facts an agency command is checked against."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from shared.domain.state_machine import Flags, RequestState
from shared.problems import INTERNAL_KEY_HEADER

from .domain_commands import RequestFacts

LOOKUP_PATH = "/api/v1/tracking/lookup"
FACTS_PATH = "/internal/v1/requests/"
MAX_ANSWER_BYTES = 1024 * 1024


log = logging.getLogger(__name__)

T = TypeVar("T")


class TrackingUnavailable(Exception):
    """tracking gave no usable answer (down, slow, 5xx or malformed): nothing can be checked, so nothing is done."""


class LookupThrottled(Exception):
    """tracking throttled the lookup (per citizen address or per code): the citizen waits `retry_after_s`."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"retry after {retry_after_s}s")
        self.retry_after_s = retry_after_s


# The address of the citizen on whose behalf intake looks a request up. tracking throttles lookups per client
# address; without it every citizen would share intake's own address (and one budget). Set by the citizen routes.
CITIZEN_ADDRESS: ContextVar[str | None] = ContextVar("citizen_address", default=None)


@dataclass(frozen=True)
class RequestView:
    """What intake needs to know of a request before it records a citizen's command."""

    tracking_code: str
    service_id: str
    catalog_version: int
    status: RequestState
    flags: Flags


class TrackingClient:
    """tracking's `POST /api/v1/tracking/lookup` and `GET /internal/v1/requests/{code}` over HTTP, each bounded."""

    def __init__(
        self, base_url: str, *, timeout_s: float, internal_key: str = "", client: httpx.AsyncClient | None = None
    ) -> None:
        self.lookup_url = base_url.rstrip("/") + LOOKUP_PATH
        self.facts_url = base_url.rstrip("/") + FACTS_PATH
        self.internal_key = internal_key
        self.timeout_s = timeout_s
        # Tests inject a client over httpx.MockTransport; an injected client is closed by its owner.
        self.http = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._owns_client = client is None

    async def lookup(self, *, tracking_code: str, national_id: str) -> RequestView | None:
        """The request, when this national ID is its applicant's; None for "no such code" and "not yours" alike."""
        # Personal data goes in the body, never the URL (URLs end up in logs and span attributes).
        payload = {"tracking_code": tracking_code, "national_id": national_id}
        address = CITIZEN_ADDRESS.get()
        headers = {"X-Forwarded-For": address} if address else None
        response = await self._call(
            self.http.post(self.lookup_url, json=payload, headers=headers, timeout=self.timeout_s)
        )
        if response.status_code == 404:
            return None
        if response.status_code == 429:
            raise LookupThrottled(_retry_after(response.headers.get("Retry-After")))
        return _read(response, _view)

    async def request_facts(self, tracking_code: str) -> RequestFacts | None:
        """What tracking's projection holds of the request (no personal data); None when it holds no such code."""
        headers = {INTERNAL_KEY_HEADER: self.internal_key}
        response = await self._call(
            self.http.get(self.facts_url + tracking_code, headers=headers, timeout=self.timeout_s)
        )
        if response.status_code == 404:
            return None
        if response.status_code == 401:
            # A deployment error, not the agency's: INTAKE_TRACKING_KEY is not tracking's TRACKING_INTERNAL_KEY.
            log.error("tracking refused intake's internal key: check INTAKE_TRACKING_KEY")
        return _read(response, _facts)

    async def _call(self, sent: Awaitable[httpx.Response]) -> httpx.Response:
        """tracking's answer to a call, within the time budget; TrackingUnavailable when none came."""
        try:
            # httpx's timeout bounds each phase; this bounds the whole call the caller is waiting on.
            async with asyncio.timeout(self.timeout_s):
                return await sent
        except (httpx.HTTPError, TimeoutError) as error:
            raise TrackingUnavailable(type(error).__name__) from error

    async def aclose(self) -> None:
        """Close the connection pool, unless the client was injected."""
        if self._owns_client:
            await self.http.aclose()


def _retry_after(value: str | None) -> int:
    try:
        return max(1, min(3600, int(value or "")))
    except ValueError:
        return 60


def _read(response: httpx.Response, parse: Callable[[dict[str, Any]], T]) -> T:
    """A 200 answer, bounded, as `parse` reads it; TrackingUnavailable for any other answer or a malformed one."""
    if response.status_code != 200 or len(response.content) > MAX_ANSWER_BYTES:
        raise TrackingUnavailable(f"HTTP {response.status_code}")
    try:
        answer = response.json()
        if not isinstance(answer, dict):
            raise TypeError("the answer is not an object")
        return parse(answer)
    except (ValueError, KeyError, TypeError) as error:
        raise TrackingUnavailable("malformed answer") from error


def _request_fields(answer: dict[str, Any]) -> dict[str, Any]:
    """What every answer of tracking's says of a request: code, service, catalog version, state and flags."""
    flags = (answer["sla_breached"], answer["complaint_open"])
    # Checked, never converted: bool("false") is True.
    if not all(isinstance(flag, bool) for flag in flags):
        raise TypeError("flags are not booleans")
    return {
        "tracking_code": str(answer["tracking_code"]),
        "service_id": str(answer["service_id"]),
        "catalog_version": int(answer["catalog_version"]),
        "status": RequestState(answer["status"]),
        "flags": Flags(sla_breached=flags[0], complaint_open=flags[1]),
    }


def _view(answer: dict[str, Any]) -> RequestView:
    return RequestView(**_request_fields(answer))


def _facts(answer: dict[str, Any]) -> RequestFacts:
    open_complaint = answer["open_complaint_id"]
    if open_complaint is not None and not isinstance(open_complaint, str):
        raise TypeError("open_complaint_id is not a string")
    return RequestFacts(**_request_fields(answer), agency=str(answer["agency"]), open_complaint_id=open_complaint)
