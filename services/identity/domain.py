"""identity's pure rules: one-time sign-in codes (expiry, bounded tries, resend cool-down), sessions' lifetimes,
the keyed digests that stand for a citizen in Redis, and which signing key is active. No I/O, no async: every
clock is a parameter."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CodePolicy:
    """How a sign-in code lives: 6 digits, 2 minutes, 5 wrong tries, and a minute before another is texted."""

    ttl_s: int = 120
    resend_after_s: int = 60
    max_tries: int = 5
    digits: int = 6


@dataclass(frozen=True)
class PendingCode:
    """A code texted and not yet used: a keyed digest of (citizen, mobile, code), never the code itself."""

    digest: str
    sent_at: float
    tries: int = 0


class Redemption(enum.StrEnum):
    """What presenting a code came to; only ACCEPTED signs anyone in, and the caller is told nothing more."""

    ACCEPTED = "accepted"
    WRONG = "wrong"
    BURNT = "burnt"
    EXPIRED = "expired"
    ABSENT = "absent"


@dataclass(frozen=True)
class Redeemed:
    """The outcome, and what stays stored (None: forget the code)."""

    outcome: Redemption
    after: PendingCode | None


def may_send(pending: PendingCode | None, *, now: float, policy: CodePolicy) -> bool:
    """Whether a new code may be texted: none pending, or the last one was sent at least the cool-down ago.

    A burnt code still counts: wrong guesses must not buy a fresh code sooner."""
    return pending is None or now - pending.sent_at >= policy.resend_after_s


def redeem(pending: PendingCode | None, presented: str, *, now: float, policy: CodePolicy) -> Redeemed:
    """Check a presented code's digest against the pending one: right once, wrong tries counted, the last
    wrong try burns the code (kept until it expires, so the cool-down still holds), late codes are forgotten."""
    if pending is None:
        return Redeemed(Redemption.ABSENT, None)
    if now - pending.sent_at >= policy.ttl_s:
        return Redeemed(Redemption.EXPIRED, None)
    if pending.tries >= policy.max_tries:
        return Redeemed(Redemption.BURNT, pending)
    if hmac.compare_digest(pending.digest, presented):
        return Redeemed(Redemption.ACCEPTED, None)
    tries = pending.tries + 1
    return Redeemed(
        Redemption.BURNT if tries >= policy.max_tries else Redemption.WRONG, dataclasses.replace(pending, tries=tries)
    )


def subject_handle(key: bytes, national_id: str) -> str:
    """The keyed digest that stands for a citizen in Redis keys and in the token's `sdg` claim."""
    return hmac.new(key, f"subject:{national_id}".encode(), hashlib.sha256).hexdigest()


def code_digest(key: bytes, *, subject: str, mobile: str, code: str) -> str:
    """The digest stored for a code: bound to the citizen and the mobile it was texted to."""
    return hmac.new(key, f"code:{subject}:{mobile}:{code}".encode(), hashlib.sha256).hexdigest()


def refresh_token_digest(token: str) -> str:
    """What Redis keeps of a refresh token: 256 random bits need no slow or keyed hash."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    """A signed-in citizen on one device: started at sign-in, ended by sign-out or after its lifetime."""

    session_id: str
    national_id: str
    mobile: str
    subject: str
    started_at: float
    expires_at: float

    def __repr__(self) -> str:
        # Never the national ID or mobile in a log line or a traceback.
        return f"Session(session_id={self.session_id!r})"


def open_session(
    *, session_id: str, national_id: str, mobile: str, subject: str, now: float, lifetime_s: int
) -> Session:
    """A new session; it ends `lifetime_s` after sign-in however often it is refreshed, so the mobile is proven
    again at least that often."""
    return Session(session_id, national_id, mobile, subject, started_at=now, expires_at=now + lifetime_s)


def session_usable(session: Session, *, now: float, not_before: float | None) -> bool:
    """Whether a session may still be refreshed: not past its lifetime, not begun before a sign-out everywhere."""
    return now < session.expires_at and (not_before is None or session.started_at >= not_before)


def active_kid(kids: Sequence[str], wanted: str | None) -> str:
    """The signing key's kid: the one configured, or the only key; ValueError for an unknown or missing choice."""
    if len(set(kids)) != len(kids):
        raise ValueError("two signing keys share a kid")
    if wanted is not None:
        if wanted not in kids:
            raise ValueError(f"the active kid {wanted!r} is not among the signing keys")
        return wanted
    if len(kids) != 1:
        raise ValueError("several signing keys: name the active one (IDENTITY_ACTIVE_KID)")
    return kids[0]
