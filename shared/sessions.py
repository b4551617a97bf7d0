"""A citizen's session, checked the same way by every service that needs one.

identity (services/identity) signs short-lived access tokens: JWTs signed with Ed25519 under a `kid`, whose
public keys it publishes at `/.well-known/jwks.json`. `SessionVerifier` checks a token's signature, issuer,
audience and expiry (a small leeway for clock skew), then asks Redis in ONE round trip (MGET) whether the
session was signed out or its citizen signed out everywhere since the token was issued. When Redis cannot
answer it fails closed (`SessionsUnavailable`, a 503): a revoked session must never pass because a cache was
down. `citizen_session` / `CitizenSessionDep` put it on a FastAPI route: the route gets a `CitizenSession` or
the caller one uniform 401 problem (Persian and English, `WWW-Authenticate: Bearer`).

The claim names and the Redis keys of revocation are defined here once: identity writes what this reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Protocol

import httpx
import redis.asyncio as aioredis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from prometheus_client import Counter

from shared.problems import ProblemSpec, unavailable
from shared.rate_limits import REDIS_FAILURES
from shared.settings import SessionSettings

log = logging.getLogger(__name__)

ISSUER: Final = "khedmat-identity"
AUDIENCE: Final = "khedmat"
# EdDSA over Ed25519 under its fully specified JOSE name (RFC 9864), which deprecates the polymorphic "EdDSA".
SIGNING_ALGORITHM: Final = "Ed25519"
CITIZEN: Final = "citizen"
# The claims of an access token beyond the registered ones: the verified mobile, the session, the kind of
# identity (citizens now; operators and agency staff later) and the subject's handle, a keyed digest of the
# national ID that names the subject's "not before" key in Redis without the verifier holding identity's key.
CLAIM_MOBILE: Final = "mob"
CLAIM_SESSION: Final = "sid"
CLAIM_KIND: Final = "knd"
CLAIM_SUBJECT_HANDLE: Final = "sdg"
# A token longer than this is not one of identity's (they are about 600 characters): refused before parsing.
MAX_TOKEN_CHARS: Final = 4096
MAX_JWKS_BYTES: Final = 64 * 1024
REVOCATION_PREFIX: Final = "khedmat:sessions"

SESSION_CHECKS = Counter(
    "khedmat_sessions_checked_total", "Access tokens checked, by outcome (accepted, refused, unavailable)", ["outcome"]
)


def session_revoked_key(session_id: str) -> str:
    """Set by identity when a session is signed out (or its refresh token was stolen): its tokens are refused."""
    return f"{REVOCATION_PREFIX}:revoked:{session_id}"


def subject_not_before_key(subject_handle: str) -> str:
    """The moment (Unix seconds) a citizen signed out everywhere: tokens issued before it are refused."""
    return f"{REVOCATION_PREFIX}:not-before:{subject_handle}"


def citizen_claims(
    *,
    national_id: str,
    mobile: str,
    session_id: str,
    subject_handle: str,
    issued_at: float,
    expires_at: int,
    token_id: str,
) -> dict[str, Any]:
    """An access token's claims. `iat` keeps milliseconds so a sign-out everywhere and a sign-in in the same
    second are told apart (RFC 7519 allows a non-integer NumericDate)."""
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": national_id,
        CLAIM_MOBILE: mobile,
        CLAIM_SESSION: session_id,
        CLAIM_KIND: CITIZEN,
        CLAIM_SUBJECT_HANDLE: subject_handle,
        "iat": round(issued_at, 3),
        "exp": expires_at,
        "jti": token_id,
    }


@dataclass(frozen=True)
class CitizenSession:
    """Who a valid access token speaks for: the national ID, the mobile the registry tied to it, the session."""

    national_id: str
    mobile: str
    session_id: str
    kind: str

    def __repr__(self) -> str:
        # Never the national ID or mobile in a log line or a traceback's locals.
        return f"CitizenSession(session_id={self.session_id!r}, kind={self.kind!r})"


class SessionRefused(Exception):
    """No session: the token is missing, malformed, forged, of another issuer or audience, expired or revoked."""


class SessionsUnavailable(Exception):
    """The session cannot be checked now (Redis, or identity's keys, cannot be had): refused, not assumed valid."""


class KeySource(Protocol):
    """Where a verifier gets identity's public keys; `unknown_kid` asks for a fresh copy (it may be throttled)."""

    async def key_set(self, *, unknown_kid: bool = False) -> KeySet: ...


class StaticKeys:
    """Keys known in-process: identity verifying its own tokens, and tests."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    async def key_set(self, *, unknown_kid: bool = False) -> KeySet:
        return self._keys

    async def aclose(self) -> None:
        return None


def public_key_set(document: Mapping[str, Any]) -> KeySet:
    """The Ed25519 signing keys of a JWKS document, public halves only; ValueError when there is none."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise ValueError("a JWKS document has a list of keys")
    public = [
        {name: key[name] for name in ("kty", "crv", "x", "kid", "alg", "use") if name in key}
        for key in keys
        if isinstance(key, dict) and key.get("kty") == "OKP" and key.get("crv") == "Ed25519" and key.get("kid")
    ]
    if not public:
        raise ValueError("no Ed25519 key with a kid in the JWKS document")
    try:
        return KeySet.import_key_set({"keys": public})
    except (JoseError, ValueError, TypeError) as error:
        raise ValueError(f"unreadable JWKS document: {type(error).__name__}") from error


class IdentityJwks:
    """identity's published keys, fetched over HTTP and cached.

    Fetched again when older than `max_age_s` (so a key removed at the end of a rotation stops verifying) and
    when a token names a kid the cache does not hold (a key added by a rotation), but never more often than
    once per `min_refetch_s`: forged kids must not turn into a flood of requests to identity. While identity
    does not answer, the keys already held go on verifying; with none held, checks fail closed.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 2.0,
        max_age_s: float = 300.0,
        min_refetch_s: float = 30.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.max_age_s = max_age_s
        self.min_refetch_s = min_refetch_s
        self.http = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self.clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    def _due(self, *, unknown_kid: bool) -> bool:
        now = self.clock()
        if self._keys is not None and not unknown_kid and now - self._fetched_at < self.max_age_s:
            return False
        # With no keys at all, a retry each second: every check is failing until one arrives.
        interval = self.min_refetch_s if self._keys is not None else 1.0
        return self._attempted_at is None or now - self._attempted_at >= interval

    async def key_set(self, *, unknown_kid: bool = False) -> KeySet:
        if self._due(unknown_kid=unknown_kid):
            async with self._lock:
                # Another check may have fetched while this one waited for the lock.
                if self._due(unknown_kid=unknown_kid):
                    await self._refresh()
        if self._keys is None:
            raise SessionsUnavailable("identity's keys could not be fetched")
        return self._keys

    async def _refresh(self) -> None:
        self._attempted_at = self.clock()
        try:
            response = await self.http.get(self.url)
            if response.status_code != 200 or len(response.content) > MAX_JWKS_BYTES:
                raise ValueError(f"identity answered {response.status_code} for its keys")
            self._keys = public_key_set(json.loads(response.content))
            self._fetched_at = self.clock()
        except (httpx.HTTPError, ValueError) as error:
            log.warning("identity's keys could not be fetched: %s", type(error).__name__)

    async def aclose(self) -> None:
        await self.http.aclose()


def _claims_registry(now: int, leeway_s: int) -> jwt.JWTClaimsRegistry:
    essential: jwt.ClaimsOption = {"essential": True}
    return jwt.JWTClaimsRegistry(
        now=now,
        leeway=leeway_s,
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        exp=essential,
        iat=essential,
        sub=essential,
        jti=essential,
        **{name: essential for name in (CLAIM_MOBILE, CLAIM_SESSION, CLAIM_KIND, CLAIM_SUBJECT_HANDLE)},
    )


def _session_of(claims: Mapping[str, Any]) -> CitizenSession:
    values = [claims.get(name) for name in ("sub", CLAIM_MOBILE, CLAIM_SESSION, CLAIM_KIND, CLAIM_SUBJECT_HANDLE)]
    if not all(isinstance(value, str) and value for value in values) or claims.get(CLAIM_KIND) != CITIZEN:
        raise SessionRefused("claims of the wrong type or kind")
    return CitizenSession(
        national_id=claims["sub"],
        mobile=claims[CLAIM_MOBILE],
        session_id=claims[CLAIM_SESSION],
        kind=claims[CLAIM_KIND],
    )


class SessionVerifier:
    """Checks an access token: signature under one of identity's keys, issuer, audience, expiry, revocation."""

    def __init__(
        self,
        keys: KeySource,
        redis: aioredis.Redis,
        *,
        leeway_s: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.redis = redis
        self.leeway_s = leeway_s
        self.clock = clock

    async def verify(self, token: str) -> CitizenSession:
        """The session a valid token speaks for; SessionRefused or SessionsUnavailable otherwise."""
        try:
            claims = await self._claims(token)
            session = _session_of(claims)
            await self._check_not_revoked(claims)
        except SessionRefused:
            SESSION_CHECKS.labels("refused").inc()
            raise
        except SessionsUnavailable:
            SESSION_CHECKS.labels("unavailable").inc()
            raise
        SESSION_CHECKS.labels("accepted").inc()
        return session

    async def _claims(self, token: str) -> dict[str, Any]:
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise SessionRefused("no token, or far too long")
        try:
            return self._decode(token, await self.keys.key_set())
        except InvalidKeyIdError:
            # Perhaps a key published since the keys were fetched: one fresh look (throttled by the source).
            try:
                return self._decode(token, await self.keys.key_set(unknown_kid=True))
            except InvalidKeyIdError as error:
                raise SessionRefused("unknown kid") from error

    def _decode(self, token: str, keys: KeySet) -> dict[str, Any]:
        try:
            decoded = jwt.decode(token, keys, algorithms=[SIGNING_ALGORITHM])
        except InvalidKeyIdError:
            raise
        except (JoseError, ValueError, TypeError, KeyError) as error:
            raise SessionRefused(type(error).__name__) from error
        if not isinstance(decoded.header.get("kid"), str):
            raise SessionRefused("no kid")
        try:
            _claims_registry(int(self.clock()), self.leeway_s).validate(decoded.claims)
        except JoseError as error:
            raise SessionRefused(type(error).__name__) from error
        return decoded.claims

    async def _check_not_revoked(self, claims: Mapping[str, Any]) -> None:
        try:
            revoked, not_before = await self.redis.mget(
                session_revoked_key(claims[CLAIM_SESSION]), subject_not_before_key(claims[CLAIM_SUBJECT_HANDLE])
            )
        except REDIS_FAILURES as error:
            raise SessionsUnavailable(type(error).__name__) from error
        if revoked is not None:
            raise SessionRefused("session signed out")
        if not_before is not None:
            try:
                signed_out_everywhere_at = float(not_before)
            except ValueError:
                signed_out_everywhere_at = float("inf")  # unreadable: refused rather than let through
            if float(claims["iat"]) < signed_out_everywhere_at:
                raise SessionRefused("signed out everywhere")


def session_verifier(settings: SessionSettings, redis: aioredis.Redis) -> tuple[SessionVerifier, IdentityJwks]:
    """A verifier of identity's tokens for a service other than identity, and its key cache (to close at stop)."""
    jwks = IdentityJwks(settings.jwks_url, timeout_s=settings.jwks_timeout_s, max_age_s=settings.jwks_max_age_s)
    return SessionVerifier(jwks, redis, leeway_s=settings.leeway_s), jwks


# --- on a FastAPI route -----------------------------------------------------------------------------------

SESSION_VERIFIER_STATE: Final = "session_verifier"

SESSION_REFUSED: Final = ProblemSpec(
    status=401,
    slug="session-unauthenticated",
    title_en="Please sign in",
    title_fa="لطفاً وارد شوید",
    detail_en="Send the access token from sign-in as a Bearer token; if it has expired, refresh it or sign in again.",
    detail_fa=(
        "توکن دسترسی را که هنگام ورود گرفته‌اید با پیشوند Bearer بفرستید؛ "
        "اگر منقضی شده است آن را تازه کنید یا دوباره وارد شوید."
    ),
    headers={"WWW-Authenticate": "Bearer"},
)
SESSIONS_UNAVAILABLE: Final = unavailable(
    "sessions-unavailable",
    "Your session cannot be checked right now",
    "نشست شما در این لحظه بررسی‌پذیر نیست",
    detail_en="Nothing was read or changed. Please try again in a few seconds.",
    detail_fa="چیزی خوانده یا تغییر داده نشد. لطفاً چند ثانیهٔ دیگر دوباره تلاش کنید.",
)

citizen_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="citizenSession",
    bearerFormat="JWT",
    description="The access token identity gives at sign-in (POST /api/v1/identity/sign-in/verify), 5 minutes.",
)


async def citizen_session(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(citizen_bearer)]
) -> CitizenSession:
    """The caller's session, or the one 401 for a missing, invalid, expired or revoked token (503 when the
    session cannot be checked). The app puts its `SessionVerifier` on `app.state.session_verifier`."""
    verifier: SessionVerifier = getattr(request.app.state, SESSION_VERIFIER_STATE)
    if credentials is None:
        SESSION_CHECKS.labels("refused").inc()
        raise SESSION_REFUSED.error()
    try:
        return await verifier.verify(credentials.credentials)
    except SessionRefused:
        raise SESSION_REFUSED.error() from None
    except SessionsUnavailable:
        raise SESSIONS_UNAVAILABLE.error() from None


CitizenSessionDep = Annotated[CitizenSession, Depends(citizen_session)]
