"""A citizen's history of requests, after proving who they are: a one-time code texted to the mobile on record
(notify holds the contacts; tracking holds only a keyed digest of the national ID), then a short-lived token.

One-time codes live in Redis (every replica must see them): a keyed hash of the code, never the code, with a
bounded number of tries; without Redis the history answers 503 rather than a weaker check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis

from shared.rate_limits import REDIS_FAILURES

from . import store
from .store import RequestRecord, Sessions

CODE_DIGITS = 6
MAX_TRIES = 5
INTERNAL_KEY_HEADER = "X-Internal-Key"


class HistoryUnavailable(Exception):
    """Redis or notify cannot take part now: nothing was sent or checked."""


class OneTimeCodes:
    """Six-digit codes per national ID digest, for `ttl_s`, at most MAX_TRIES wrong guesses each."""

    def __init__(
        self, redis: aioredis.Redis, *, key: bytes, ttl_s: int = 300, prefix: str = "khedmat:tracking"
    ) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._key = hmac.new(key, b"one-time-code", hashlib.sha256).digest()

    def _name(self, subject: str) -> str:
        return f"{self.prefix}:otp:{subject}"

    def _hash(self, subject: str, code: str) -> str:
        return hmac.new(self._key, f"{subject}:{code}".encode(), hashlib.sha256).hexdigest()

    async def issue(self, subject: str) -> str:
        """A fresh code for `subject` (replacing any earlier one)."""
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._name(subject), mapping={"hash": self._hash(subject, code), "tries": 0})
                pipe.expire(self._name(subject), self.ttl_s)
                await pipe.execute()
        except REDIS_FAILURES as error:
            raise HistoryUnavailable(type(error).__name__) from error
        return code

    async def withdraw(self, subject: str) -> None:
        """Forget the code (it could not be sent)."""
        try:
            await self.redis.delete(self._name(subject))
        except REDIS_FAILURES as error:
            raise HistoryUnavailable(type(error).__name__) from error

    async def redeem(self, subject: str, code: str) -> bool:
        """True once for the right code; a wrong one spends a try, and the last try burns the code."""
        name = self._name(subject)
        try:
            stored = await self.redis.hget(name, "hash")
            if stored is None:
                return False
            expected = stored.decode() if isinstance(stored, bytes) else str(stored)
            if hmac.compare_digest(expected, self._hash(subject, code)):
                # Only one redemption wins, even when two arrive at once.
                return bool(await self.redis.delete(name))
            if int(await self.redis.hincrby(name, "tries", 1)) >= MAX_TRIES:
                await self.redis.delete(name)
            return False
        except REDIS_FAILURES as error:
            raise HistoryUnavailable(type(error).__name__) from error


@dataclass(frozen=True)
class HistoryTokens:
    """Signed, short-lived bearer tokens naming a national ID digest (and nothing personal)."""

    key: bytes
    ttl_s: int = 900

    def _mac(self, payload: bytes) -> str:
        signing = hmac.new(self.key, b"history-token", hashlib.sha256).digest()
        return base64.urlsafe_b64encode(hmac.new(signing, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def issue(self, subject: str, now: float | None = None, *, audit_subject: str | None = None) -> str:
        claims = {"sub": subject, "exp": int((now or time.time()) + self.ttl_s), "pur": "history"}
        if audit_subject is not None:
            # The citizen's subject digest on desk.access (another key's HMAC): reads are recorded under it.
            claims["asb"] = audit_subject
        payload = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{payload}.{self._mac(payload.encode())}"

    def _claims(self, token: str, now: float | None) -> dict[str, object] | None:
        payload, _, mac = token.partition(".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload.encode())):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        if not isinstance(claims, dict) or claims.get("pur") != "history":
            return None
        return claims if int(claims.get("exp", 0)) >= (now or time.time()) else None

    def subject(self, token: str, now: float | None = None) -> str | None:
        """The digest a valid, unexpired token names; None otherwise."""
        subject = (self._claims(token, now) or {}).get("sub")
        return subject if isinstance(subject, str) else None

    def audit_subject(self, token: str, now: float | None = None) -> str | None:
        """The access-record subject a valid, unexpired token names; None otherwise (or for an older token)."""
        subject = (self._claims(token, now) or {}).get("asb")
        return subject if isinstance(subject, str) else None


class NotifyCodeSender:
    """notify's internal route that texts a code to a request's applicant (notify holds the mobile)."""

    def __init__(
        self, base_url: str, *, internal_key: str, timeout_s: float = 5.0, client: httpx.AsyncClient | None = None
    ):
        self.url = base_url.rstrip("/") + "/internal/v1/one-time-codes"
        self.internal_key = internal_key
        self.http = client or httpx.AsyncClient(timeout=timeout_s)

    async def send(self, *, tracking_code: str, code: str) -> None:
        try:
            response = await self.http.post(
                self.url,
                json={"tracking_code": tracking_code, "code": code},
                headers={INTERNAL_KEY_HEADER: self.internal_key},
            )
        except httpx.HTTPError as error:
            raise HistoryUnavailable(type(error).__name__) from error
        if response.status_code != 202:
            raise HistoryUnavailable(f"notify answered {response.status_code}")

    async def aclose(self) -> None:
        await self.http.aclose()


async def latest_request(sessions: Sessions, subject: str) -> str | None:
    """The tracking code of the applicant's most recent request (its contact is the freshest)."""
    return await store.latest_request_of(sessions=sessions, subject=subject)


async def requests_of(sessions: Sessions, subject: str, limit: int = 100) -> list[RequestRecord]:
    """The applicant's requests, newest first."""
    return await store.requests_of(sessions=sessions, subject=subject, limit=limit)
