"""Outbound edges: one HTTP client per agency, with timeouts and retries only for errors worth retrying."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

MAX_ANSWER_BYTES = 64 * 1024


class AgencyUnavailable(Exception):
    """The agency did not give a usable answer (timeout, 5xx, 429, dropped connection)."""


class AgencyRefused(Exception):
    """The agency answered with a 4xx other than 429: retrying cannot help."""


@dataclass(frozen=True)
class IdentityAnswer:
    """What the civil registry says about a national ID and birth date."""

    match: bool
    alive: bool


class CivilRegistry(Protocol):
    """The civil registry's identity check."""

    async def check_identity(self, *, national_id: str, birth_date: date) -> IdentityAnswer: ...


def _retryable(error: BaseException) -> bool:
    return isinstance(error, AgencyUnavailable)


class HttpCivilRegistry:
    """The civil registry over HTTP (`POST /civil-registry/v1/identity`)."""

    def __init__(self, client: httpx.AsyncClient, *, max_attempts: int) -> None:
        self.client = client
        self.max_attempts = max_attempts

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.client.post(path, json=payload)
        except httpx.TransportError as error:  # timeouts, refused and dropped connections
            raise AgencyUnavailable(type(error).__name__) from error
        if response.status_code >= 500 or response.status_code == 429:
            raise AgencyUnavailable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise AgencyRefused(f"HTTP {response.status_code}")
        if len(response.content) > MAX_ANSWER_BYTES:
            raise AgencyRefused("oversized answer")
        try:
            answer = response.json()
        except ValueError as error:
            raise AgencyRefused("malformed answer") from error
        if not isinstance(answer, dict):
            raise AgencyRefused("malformed answer")
        return answer

    async def check_identity(self, *, national_id: str, birth_date: date) -> IdentityAnswer:
        """Ask whether this national ID is registered with this birth date, retrying transient failures."""
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_random_exponential(multiplier=0.1, max=2.0),
            retry=retry_if_exception(_retryable),
            reraise=True,
        ):
            with attempt:
                answer = await self._post(
                    "/civil-registry/v1/identity",
                    {"national_id": national_id, "birth_date": birth_date.isoformat()},
                )
        match, alive = answer.get("match"), answer.get("alive")
        # Only real booleans: bool("false") is True, and a garbled answer must never pass an identity check.
        if not isinstance(match, bool) or not isinstance(alive, bool):
            raise AgencyRefused("malformed answer")
        return IdentityAnswer(match=match, alive=alive)


def make_agency_client(base_url: str, *, timeout_s: float) -> httpx.AsyncClient:
    """A pooled client for one agency: bounded timeouts, no redirects followed."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )
