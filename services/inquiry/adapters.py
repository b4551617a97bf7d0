"""Outbound edges: one HTTP client per agency, with timeouts and retries only for errors worth retrying."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol, TypedDict

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

MAX_ANSWER_BYTES = 64 * 1024
# An agency asking us to wait longer than this is treated as down for now: the retry budget must stay short.
MAX_RETRY_AFTER_S = 10.0

Attempt = Callable[[], Awaitable[httpx.Response]]
# Wraps each HTTP attempt (inside the retry loop); raising AgencyUnavailable means "do not call" and ends the call.
CallGuard = Callable[[str, Attempt], Awaitable[httpx.Response]]
Sleep = Callable[[float], Awaitable[None]]
_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class AgencyUnavailable(Exception):
    """The agency did not give a usable answer (timeout, 5xx, 429, dropped connection)."""


class AgencyRefused(Exception):
    """The agency answered with a 4xx other than 429, a redirect, or an answer that cannot be used."""


class _Transient(AgencyUnavailable):
    """One attempt failed in a way another attempt may not; carries the wait the agency asked for."""

    def __init__(self, message: str, *, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class IdentityAnswer:
    """What the civil registry says about a national ID and birth date."""

    match: bool
    alive: bool


class PostalAddress(TypedDict):
    """An address as the postal service holds it for a postal code."""

    postal_code: str
    province: str
    city: str
    street: str
    alley: str
    plaque: int
    unit: int
    full_address: str


class CivilRegistry(Protocol):
    """The civil registry's identity check."""

    async def check_identity(self, *, national_id: str, birth_date: date) -> IdentityAnswer: ...


class MobileRegistry(Protocol):
    """The mobile registry's line-ownership check."""

    async def check_ownership(self, national_id: str, mobile: str) -> bool: ...


class PostalRegistry(Protocol):
    """The postal service's address lookup."""

    async def address(self, postal_code: str) -> PostalAddress | None: ...


class TaxAdministration(Protocol):
    """The tax administration's clearance check."""

    async def clearance(self, national_id: str) -> tuple[bool, int]: ...


class Judiciary(Protocol):
    """The judiciary's criminal-record check."""

    async def criminal_record(self, national_id: str) -> bool: ...


class PropertyRegistry(Protocol):
    """The property registry's ownership check."""

    async def ownership(self, national_id: str, property_id: str) -> bool: ...


@dataclass
class AttemptTally:
    """How many attempts the agency calls made inside one `count_attempts()` block."""

    attempts: int = 0


_TALLY: ContextVar[AttemptTally | None] = ContextVar("inquiry_attempt_tally", default=None)


@contextlib.contextmanager
def count_attempts() -> Iterator[AttemptTally]:
    """Count the HTTP attempts the agency calls in this block make (per task, so concurrent inquiries don't mix)."""
    tally = AttemptTally()
    token = _TALLY.set(tally)
    try:
        yield tally
    finally:
        _TALLY.reset(token)


async def _pass_through(_agency: str, attempt: Attempt) -> httpx.Response:
    return await attempt()


def _retry_after_s(response: httpx.Response) -> float:
    # Only the delta-seconds form: an HTTP-date depends on clocks agreeing, and the backoff covers it anyway.
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return 0.0
    if not math.isfinite(seconds) or seconds <= 0:
        return 0.0
    return min(seconds, MAX_RETRY_AFTER_S)


def _retryable(error: BaseException) -> bool:
    return isinstance(error, _Transient)


def _strict_bool(answer: dict[str, Any], key: str) -> bool:
    value = answer.get(key)
    # Only real booleans: bool("false") is True, and a garbled answer must never pass a check.
    if not isinstance(value, bool):
        raise AgencyRefused(f"malformed answer: {key} is not a boolean")
    return value


def _strict_int(answer: dict[str, Any], key: str) -> int:
    value = answer.get(key)
    # bool is an int subclass in Python; True must not read as 1 rial.
    if not isinstance(value, int) or isinstance(value, bool):
        raise AgencyRefused(f"malformed answer: {key} is not an integer")
    return value


def _strict_str(answer: dict[str, Any], key: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str):
        raise AgencyRefused(f"malformed answer: {key} is not a string")
    return value


class HttpAgency:
    """The HTTP plumbing every agency client shares: guard, bounded answers, retries for transient failures."""

    agency = "agency"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_attempts: int,
        guard: CallGuard | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.client = client
        self.max_attempts = max_attempts
        self.guard: CallGuard = guard or _pass_through
        # Injected so tests can record the waits instead of sleeping them.
        self.sleep: Sleep = sleep or asyncio.sleep

    async def _send(self, request: httpx.Request) -> httpx.Response:
        # Streamed and cut off past the limit, so a huge (or decompression-bomb) answer is never held whole.
        response = await self.client.send(request, stream=True, follow_redirects=False)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_ANSWER_BYTES:
                    break
        finally:
            await response.aclose()
        # The body is already decoded, so the encoding headers no longer describe it.
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
        return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=request)

    async def _attempt(self, request: httpx.Request) -> httpx.Response:
        transport_error: httpx.TransportError | None = None

        async def attempt() -> httpx.Response:
            nonlocal transport_error
            try:
                return await self._send(request)
            except httpx.TransportError as error:
                transport_error = error
                raise

        tally = _TALLY.get()
        if tally is not None:
            tally.attempts += 1
        try:
            response = await self.guard(self.agency, attempt)
        except httpx.TransportError as error:  # timeouts, refused and dropped connections
            raise _Transient(type(error).__name__) from error
        except AgencyUnavailable as error:
            if transport_error is not None:  # a guard that translated the attempt's own failure: still transient
                raise _Transient(type(transport_error).__name__) from error
            raise  # the guard said "do not call": not retried
        if response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code}")
        if response.status_code == 429:
            raise _Transient("HTTP 429", retry_after_s=_retry_after_s(response))
        return response

    def _wait(self, state: RetryCallState) -> float:
        # Looked up per call so tests can swap the backoff; Retry-After is a floor under the jittered backoff.
        backoff = wait_random_exponential(multiplier=0.1, max=2.0)(state)
        error = state.outcome.exception() if state.outcome is not None else None
        floor = error.retry_after_s if isinstance(error, _Transient) else 0.0
        return max(backoff, floor)

    async def _call(self, request: httpx.Request) -> httpx.Response:
        """Send one request with the retry budget; any status below 500 other than 429 comes back as is."""
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.max_attempts),
                wait=self._wait,
                retry=retry_if_exception(_retryable),
                sleep=self.sleep,
                reraise=True,
            ):
                with attempt:
                    response = await self._attempt(request)
        except _Transient as error:
            raise AgencyUnavailable(str(error)) from error
        if len(response.content) > MAX_ANSWER_BYTES:
            raise AgencyRefused("oversized answer")
        return response

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            answer = json.loads(response.content)
        except ValueError as error:
            raise AgencyRefused("malformed answer") from error
        if not isinstance(answer, dict):
            raise AgencyRefused("malformed answer")
        return answer

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        # 3xx too: a redirect would send a citizen's data somewhere nobody configured.
        if response.status_code != 200:
            raise AgencyRefused(f"HTTP {response.status_code}")
        return self._json(response)

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._answer(await self._call(self.client.build_request("POST", path, json=payload)))


class HttpCivilRegistry(HttpAgency):
    """The civil registry over HTTP (`POST /civil-registry/v1/identity`)."""

    agency = "civil-registry"

    async def check_identity(self, *, national_id: str, birth_date: date) -> IdentityAnswer:
        """Ask whether this national ID is registered with this birth date, retrying transient failures."""
        answer = await self._post(
            "/civil-registry/v1/identity", {"national_id": national_id, "birth_date": birth_date.isoformat()}
        )
        return IdentityAnswer(match=_strict_bool(answer, "match"), alive=_strict_bool(answer, "alive"))


class HttpMobileRegistry(HttpAgency):
    """The mobile registry over HTTP (`POST /mobile-registry/v1/ownership`)."""

    agency = "mobile-registry"

    async def check_ownership(self, national_id: str, mobile: str) -> bool:
        """Whether the mobile number is registered to this national ID."""
        answer = await self._post("/mobile-registry/v1/ownership", {"national_id": national_id, "mobile": mobile})
        return _strict_bool(answer, "owned")


class HttpPostalRegistry(HttpAgency):
    """The postal service over HTTP (`POST /postal/v1/address`: the code in the body, out of URLs and spans)."""

    agency = "postal"

    async def address(self, postal_code: str) -> PostalAddress | None:
        """The address of a postal code, or None when the postal service has no such code."""
        request = self.client.build_request("POST", "/postal/v1/address", json={"postal_code": postal_code})
        response = await self._call(request)
        if response.status_code == 404:
            # Only the postal service's own "no such code" is an answer; a bare 404 (wrong route or gateway)
            # must not tell a citizen their postal code does not exist.
            if self._json(response).get("error") == "postal_code_not_found":
                return None
            raise AgencyRefused("HTTP 404")
        answer = self._answer(response)
        found = PostalAddress(
            postal_code=_strict_str(answer, "postal_code"),
            province=_strict_str(answer, "province"),
            city=_strict_str(answer, "city"),
            street=_strict_str(answer, "street"),
            alley=_strict_str(answer, "alley"),
            plaque=_strict_int(answer, "plaque"),
            unit=_strict_int(answer, "unit"),
            full_address=_strict_str(answer, "full_address"),
        )
        if found["postal_code"] != postal_code:
            raise AgencyRefused("answer is about another postal code")
        return found


class HttpTaxAdministration(HttpAgency):
    """The tax administration over HTTP (`POST /tax/v1/clearance`)."""

    agency = "tax"

    async def clearance(self, national_id: str) -> tuple[bool, int]:
        """(cleared, debt in rials) for a national ID."""
        answer = await self._post("/tax/v1/clearance", {"national_id": national_id})
        cleared, debt_rials = _strict_bool(answer, "cleared"), _strict_int(answer, "debt_rials")
        if debt_rials < 0:
            raise AgencyRefused("malformed answer: negative debt")
        return cleared, debt_rials


class HttpJudiciary(HttpAgency):
    """The judiciary's records centre over HTTP (`POST /judiciary/v1/criminal-record`)."""

    agency = "judiciary"

    async def criminal_record(self, national_id: str) -> bool:
        """Whether the criminal record of this national ID is clean."""
        answer = await self._post("/judiciary/v1/criminal-record", {"national_id": national_id})
        return _strict_bool(answer, "clean")


class HttpPropertyRegistry(HttpAgency):
    """The property registry over HTTP (`POST /property-registry/v1/ownership`)."""

    agency = "property-registry"

    async def ownership(self, national_id: str, property_id: str) -> bool:
        """Whether the registry lists this national ID as an owner of the property."""
        answer = await self._post(
            "/property-registry/v1/ownership", {"national_id": national_id, "property_id": property_id}
        )
        return _strict_bool(answer, "owner")


def make_agency_client(base_url: str, *, timeout_s: float) -> httpx.AsyncClient:
    """A pooled client for one agency: bounded timeouts, no redirects followed."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        # Keep-alive for every connection the pool may open: inquiry runs up to its concurrency in parallel.
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )
