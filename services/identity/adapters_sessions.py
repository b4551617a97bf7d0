"""Sessions and refresh tokens in Redis, and the revocation marks every service's verifier reads
(shared/sessions.py names those keys).

A session is a hash under its id (who, which mobile, when it began and ends). A refresh token is stored only as
its SHA-256, pointing at its session and counting its uses: the first use rotates it (a new one is issued), a
second use means two parties held it, and the session is revoked (theft detection, RFC 9700 §4.14.2). Used
tokens are kept until their session would have ended so that reuse is still recognised.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from shared.sessions import session_revoked_key, subject_not_before_key

from .domain import Session, refresh_token_digest

SESSIONS_PREFIX = "khedmat:identity"

# Atomic: marks the token used and says whether it already was, in one step no other request can split.
_USE_REFRESH_TOKEN = """
local sid = redis.call('HGET', KEYS[1], 'sid')
if not sid then return {'unknown', ''} end
if redis.call('HINCRBY', KEYS[1], 'uses', 1) > 1 then return {'reused', sid} end
return {'fresh', sid}
"""

RefreshKind = Literal["fresh", "reused", "unknown"]


@dataclass(frozen=True)
class RefreshUse:
    """What presenting a refresh token came to, and the session it belongs to (empty when unknown)."""

    kind: RefreshKind
    session_id: str


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SessionStore:
    """Opens sessions, rotates their refresh tokens, and revokes a session or every session of a citizen."""

    def __init__(self, redis: aioredis.Redis, *, revoked_ttl_s: int, prefix: str = SESSIONS_PREFIX) -> None:
        self.redis = redis
        # A revoked session's mark must outlive every access token it issued (their lifetime plus the leeway).
        self.revoked_ttl_s = revoked_ttl_s
        self.prefix = prefix
        self._use_refresh_token = redis.register_script(_USE_REFRESH_TOKEN)

    def _session(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}"

    def _refresh(self, token: str) -> str:
        return f"{self.prefix}:refresh:{refresh_token_digest(token)}"

    async def open(self, session: Session) -> str:
        """Store a new session and return its first refresh token."""
        token = secrets.token_urlsafe(32)
        ends = math.ceil(session.expires_at)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._session(session.session_id),
                mapping={
                    "national_id": session.national_id,
                    "mobile": session.mobile,
                    "subject": session.subject,
                    "started_at": repr(session.started_at),
                    "expires_at": repr(session.expires_at),
                },
            )
            pipe.expireat(self._session(session.session_id), ends)
            pipe.hset(self._refresh(token), mapping={"sid": session.session_id, "uses": 0})
            pipe.expireat(self._refresh(token), ends)
            await pipe.execute()
        return token

    async def rotate(self, session: Session) -> str:
        """A new refresh token for the session (the one presented was just used); it ends with the session."""
        token = secrets.token_urlsafe(32)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._refresh(token), mapping={"sid": session.session_id, "uses": 0})
            pipe.expireat(self._refresh(token), math.ceil(session.expires_at))
            await pipe.execute()
        return token

    async def use_refresh_token(self, token: str) -> RefreshUse:
        """Spend a refresh token: fresh the first time, reused after, unknown when never issued or expired."""
        kind, session_id = await self._use_refresh_token(keys=[self._refresh(token)])
        return RefreshUse(kind=_text(kind), session_id=_text(session_id))  # type: ignore[arg-type]

    async def load(self, session_id: str) -> Session | None:
        """The session, or None once it was revoked or has ended."""
        fields = {_text(k): _text(v) for k, v in (await self.redis.hgetall(self._session(session_id))).items()}
        try:
            return Session(
                session_id=session_id,
                national_id=fields["national_id"],
                mobile=fields["mobile"],
                subject=fields["subject"],
                started_at=float(fields["started_at"]),
                expires_at=float(fields["expires_at"]),
            )
        except (KeyError, ValueError):
            return None

    async def not_before(self, subject: str) -> float | None:
        """When the citizen last signed out everywhere, if they did within a session's lifetime."""
        value = await self.redis.get(subject_not_before_key(subject))
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            return math.inf  # unreadable: every session refused rather than every one let through

    async def revoke(self, session_id: str) -> None:
        """End one session: its access tokens are refused everywhere, its refresh tokens lead nowhere."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(session_revoked_key(session_id), "1", ex=self.revoked_ttl_s)
            pipe.delete(self._session(session_id))
            await pipe.execute()

    async def revoke_subject(self, subject: str, *, at: float, keep_s: int) -> None:
        """End every session the citizen began before `at`; kept as long as a session can live."""
        await self.redis.set(subject_not_before_key(subject), repr(at), ex=keep_s)
