"""identity's use cases: sign in with a national ID and the mobile the registry ties to it (a code texted to
that mobile), then short-lived access tokens refreshed by rotating refresh tokens, and sign-out."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter

from shared.rate_limits import REDIS_FAILURES
from shared.sessions import CitizenSession, citizen_claims

from .adapters import NotifyUnavailable, RegistryUnavailable
from .adapters_codes import CodesContended, SignInCodes
from .adapters_keys import SigningKeys
from .adapters_sessions import SessionStore
from .adapters_throttle import Budget, Throttle
from .domain import Session, open_session, session_usable, subject_handle

log = logging.getLogger(__name__)

# Outcomes only: never who, never which mobile.
SIGN_INS = Counter(
    "khedmat_identity_sign_ins_total",
    "Sign-in steps by outcome (code_sent, not_matched, cooling_down, verified, refused)",
    ["outcome"],
)
REFRESHES = Counter(
    "khedmat_identity_refreshes_total", "Refresh-token uses by outcome (rotated, refused, reused)", ["outcome"]
)


class SignInUnavailable(Exception):
    """The registry, notify or Redis cannot take part now: nothing was sent or stored."""


class SignInRefused(Exception):
    """The one refusal for a wrong, used, burnt or expired code, another person's mobile, or no such person."""


class RefreshRefused(Exception):
    """The refresh token is unknown, expired, revoked, or was used already (the session is then revoked)."""


class SignInThrottled(Exception):
    """A budget is spent; try again in `retry_after_s`."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


class Registry(Protocol):
    async def owns(self, *, national_id: str, mobile: str) -> bool: ...


class CodeTexter(Protocol):
    async def text(self, *, mobile: str, code: str) -> None: ...


@dataclass(frozen=True)
class Budgets:
    """The budgets sign-in spends: per client address and per citizen for sign-ins, per client for checks."""

    sign_in_per_client: Budget
    sign_in_per_citizen: Budget
    verify_per_client: Budget


@dataclass
class Identity:
    """identity's dependencies."""

    registry: Registry
    texter: CodeTexter
    codes: SignInCodes
    sessions: SessionStore
    keys: SigningKeys
    throttle: Throttle
    budgets: Budgets
    hash_key: bytes
    access_token_ttl_s: int
    session_lifetime_s: int
    clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class Tokens:
    """What a sign-in or a refresh gives: an access token and the next refresh token, with their lifetimes."""

    access_token: str
    expires_in_s: int
    refresh_token: str
    refresh_expires_in_s: int


async def _spend(identity: Identity, *charges: tuple[Budget, str]) -> None:
    try:
        wait = await identity.throttle.hit(*charges)
    except REDIS_FAILURES as error:
        raise SignInUnavailable(type(error).__name__) from error
    if wait:
        raise SignInThrottled(wait)


async def start_sign_in(identity: Identity, *, national_id: str, mobile: str, client: str) -> None:
    """Text a code to `mobile` if, and only if, the registry lists it under `national_id` and no code was texted
    within the cool-down. The caller answers the same whatever happened: nothing here tells a stranger whether
    the person exists or the mobile is theirs."""
    subject = subject_handle(identity.hash_key, national_id)
    budgets = identity.budgets
    await _spend(identity, (budgets.sign_in_per_client, client), (budgets.sign_in_per_citizen, subject))
    try:
        owned = await identity.registry.owns(national_id=national_id, mobile=mobile)
    except RegistryUnavailable as error:
        raise SignInUnavailable("registry") from error
    if not owned:
        SIGN_INS.labels("not_matched").inc()
        return
    try:
        code = await identity.codes.issue(subject=subject, mobile=mobile)
    except (*REDIS_FAILURES, CodesContended) as error:
        raise SignInUnavailable(type(error).__name__) from error
    if code is None:
        SIGN_INS.labels("cooling_down").inc()
        return
    try:
        await identity.texter.text(mobile=mobile, code=code)
    except NotifyUnavailable as error:
        await _withdraw(identity, subject)
        raise SignInUnavailable("notify") from error
    SIGN_INS.labels("code_sent").inc()


async def _withdraw(identity: Identity, subject: str) -> None:
    try:
        await identity.codes.withdraw(subject=subject)
    except REDIS_FAILURES as error:
        # The code stays until it expires: no one received it, so no one can use it.
        log.warning("an unsent sign-in code could not be withdrawn: %s", type(error).__name__)


async def verify_sign_in(identity: Identity, *, national_id: str, mobile: str, code: str, client: str) -> Tokens:
    """Trade the texted code for a new session's tokens; SignInRefused for any wrong answer, all alike."""
    await _spend(identity, (identity.budgets.verify_per_client, client))
    subject = subject_handle(identity.hash_key, national_id)
    try:
        accepted = await identity.codes.redeem(subject=subject, mobile=mobile, code=code)
        if not accepted:
            SIGN_INS.labels("refused").inc()
            raise SignInRefused()
        now = identity.clock()
        session = open_session(
            session_id=str(uuid.uuid4()),
            national_id=national_id,
            mobile=mobile,
            subject=subject,
            now=now,
            lifetime_s=identity.session_lifetime_s,
        )
        refresh_token = await identity.sessions.open(session)
    except (*REDIS_FAILURES, CodesContended) as error:
        raise SignInUnavailable(type(error).__name__) from error
    SIGN_INS.labels("verified").inc()
    return _tokens(identity, session, refresh_token, now=now)


def _tokens(identity: Identity, session: Session, refresh_token: str, *, now: float) -> Tokens:
    claims = citizen_claims(
        national_id=session.national_id,
        mobile=session.mobile,
        session_id=session.session_id,
        subject_handle=session.subject,
        issued_at=now,
        expires_at=int(now) + identity.access_token_ttl_s,
        token_id=str(uuid.uuid4()),
    )
    return Tokens(
        access_token=identity.keys.sign(claims),
        expires_in_s=identity.access_token_ttl_s,
        refresh_token=refresh_token,
        refresh_expires_in_s=max(0, int(session.expires_at - now)),
    )


async def refresh_session(identity: Identity, *, refresh_token: str) -> Tokens:
    """New tokens for a live session, the presented refresh token spent; a reused one revokes its session."""
    try:
        use = await identity.sessions.use_refresh_token(refresh_token)
        if use.kind == "reused":
            # Two parties held this token: whoever it was, the session is no longer the citizen's alone.
            await identity.sessions.revoke(use.session_id)
            REFRESHES.labels("reused").inc()
            log.warning("a refresh token was used twice: its session is revoked")
            raise RefreshRefused()
        session = await identity.sessions.load(use.session_id) if use.kind == "fresh" else None
        now = identity.clock()
        if session is None or not session_usable(
            session, now=now, not_before=await identity.sessions.not_before(session.subject)
        ):
            REFRESHES.labels("refused").inc()
            raise RefreshRefused()
        next_token = await identity.sessions.rotate(session)
    except REDIS_FAILURES as error:
        raise SignInUnavailable(type(error).__name__) from error
    REFRESHES.labels("rotated").inc()
    return _tokens(identity, session, next_token, now=now)


async def sign_out(identity: Identity, *, session: CitizenSession) -> None:
    """End the presented session on every service (its access tokens) and here (its refresh tokens)."""
    try:
        await identity.sessions.revoke(session.session_id)
    except REDIS_FAILURES as error:
        raise SignInUnavailable(type(error).__name__) from error


async def sign_out_everywhere(identity: Identity, *, session: CitizenSession) -> None:
    """End every session of the presented session's citizen, this one included."""
    subject = subject_handle(identity.hash_key, session.national_id)
    try:
        await identity.sessions.revoke_subject(subject, at=identity.clock(), keep_s=identity.session_lifetime_s)
        await identity.sessions.revoke(session.session_id)
    except REDIS_FAILURES as error:
        raise SignInUnavailable(type(error).__name__) from error
