"""identity's clients of other systems: the mobile registry (does this mobile belong to this national ID?) and
notify's internal route that texts a sign-in code. Personal data travels in JSON bodies, never in URLs."""

from __future__ import annotations

import json

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from shared.problems import INTERNAL_KEY_HEADER

MAX_ANSWER_BYTES = 4096


class RegistryUnavailable(Exception):
    """The mobile registry gave no usable answer (down, slow, 5xx, 429, or an answer that cannot be read)."""


class NotifyUnavailable(Exception):
    """notify did not take the code (down, slow, refused the key, or the SMS gateways failed)."""


class _Transient(Exception):
    """One attempt failed in a way another attempt may not."""


class MobileRegistryClient:
    """The mobile registry over HTTP (`POST /mobile-registry/v1/ownership`): a bounded timeout per attempt, and
    another attempt after a timeout, a dropped connection, a 5xx or a 429 (the inquiry clients' rule)."""

    path = "/mobile-registry/v1/ownership"

    def __init__(
        self, base_url: str, *, timeout_s: float, attempts: int, client: httpx.AsyncClient | None = None
    ) -> None:
        self.http = client or httpx.AsyncClient(base_url=base_url, timeout=timeout_s, follow_redirects=False)
        self.attempts = attempts

    async def owns(self, *, national_id: str, mobile: str) -> bool:
        """Whether the registry lists `mobile` under `national_id`; RegistryUnavailable when it cannot say."""
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_random_exponential(multiplier=0.1, max=1.0),
                retry=retry_if_exception_type(_Transient),
                reraise=True,
            ):
                with attempt:
                    response = await self._attempt(national_id, mobile)
        except _Transient as error:
            raise RegistryUnavailable(str(error)) from error
        return _owned(response)

    async def _attempt(self, national_id: str, mobile: str) -> httpx.Response:
        try:
            response = await self.http.post(self.path, json={"national_id": national_id, "mobile": mobile})
        except httpx.TransportError as error:
            raise _Transient(type(error).__name__) from error
        if response.status_code >= 500 or response.status_code == 429:
            raise _Transient(f"HTTP {response.status_code}")
        return response

    async def aclose(self) -> None:
        await self.http.aclose()


def _owned(response: httpx.Response) -> bool:
    # Anything but a plain yes or no is no answer: the registry is never assumed to have said yes.
    if response.status_code != 200 or len(response.content) > MAX_ANSWER_BYTES:
        raise RegistryUnavailable(f"HTTP {response.status_code}")
    try:
        owned = json.loads(response.content).get("owned")
    except (ValueError, AttributeError) as error:
        raise RegistryUnavailable("malformed answer") from error
    if not isinstance(owned, bool):
        raise RegistryUnavailable("malformed answer")
    return owned


class NotifyCodeTexter:
    """notify's `POST /internal/v1/sign-in-codes` (it holds the SMS gateways), behind the internal key."""

    path = "/internal/v1/sign-in-codes"

    def __init__(
        self, base_url: str, *, internal_key: str, timeout_s: float, client: httpx.AsyncClient | None = None
    ) -> None:
        self.http = client or httpx.AsyncClient(base_url=base_url, timeout=timeout_s, follow_redirects=False)
        self.internal_key = internal_key

    async def text(self, *, mobile: str, code: str) -> None:
        """Have `code` texted to `mobile`; NotifyUnavailable unless notify took it."""
        try:
            response = await self.http.post(
                self.path, json={"mobile": mobile, "code": code}, headers={INTERNAL_KEY_HEADER: self.internal_key}
            )
        except httpx.HTTPError as error:
            raise NotifyUnavailable(type(error).__name__) from error
        if response.status_code != 202:
            raise NotifyUnavailable(f"notify answered {response.status_code}")

    async def aclose(self) -> None:
        await self.http.aclose()
