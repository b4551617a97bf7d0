"""identity's pure rules with an injected clock: a sign-in code's expiry, bounded tries and resend cool-down;
sessions' lifetimes and sign-out everywhere; the digests that stand for a citizen; the active signing key."""

from __future__ import annotations

import pytest

from services.identity.domain import (
    CodePolicy,
    PendingCode,
    Redemption,
    active_kid,
    code_digest,
    may_send,
    open_session,
    redeem,
    session_usable,
    subject_handle,
)

POLICY = CodePolicy()  # 120 s, 5 tries, 60 s between codes
SENT = 1_000_000.0
RIGHT = "r" * 64


def pending(tries: int = 0) -> PendingCode:
    return PendingCode(digest=RIGHT, sent_at=SENT, tries=tries)


def test_the_defaults_are_the_issues_rules() -> None:
    assert (POLICY.ttl_s, POLICY.max_tries, POLICY.resend_after_s, POLICY.digits) == (120, 5, 60, 6)


def test_the_right_code_opens_once_within_its_two_minutes() -> None:
    accepted = redeem(pending(), RIGHT, now=SENT + 119.9, policy=POLICY)
    assert accepted.outcome is Redemption.ACCEPTED and accepted.after is None  # forgotten: one use
    assert redeem(None, RIGHT, now=SENT + 1, policy=POLICY).outcome is Redemption.ABSENT


def test_a_code_is_worth_nothing_after_its_two_minutes() -> None:
    late = redeem(pending(), RIGHT, now=SENT + 120, policy=POLICY)
    assert late.outcome is Redemption.EXPIRED and late.after is None


def test_the_fifth_wrong_try_burns_the_code_and_the_right_one_then_opens_nothing() -> None:
    state: PendingCode | None = pending()
    outcomes = []
    for _ in range(POLICY.max_tries):
        result = redeem(state, "w" * 64, now=SENT + 10, policy=POLICY)
        outcomes.append(result.outcome)
        state = result.after
    assert outcomes == [Redemption.WRONG] * 4 + [Redemption.BURNT]
    burnt = redeem(state, RIGHT, now=SENT + 11, policy=POLICY)
    assert burnt.outcome is Redemption.BURNT
    assert burnt.after == state  # kept until it expires, so the cool-down still holds


def test_a_new_code_waits_for_the_cool_down_even_after_a_burnt_one() -> None:
    assert may_send(None, now=SENT, policy=POLICY)
    assert not may_send(pending(), now=SENT + 59.9, policy=POLICY)
    assert not may_send(pending(tries=POLICY.max_tries), now=SENT + 30, policy=POLICY)
    assert may_send(pending(), now=SENT + 60, policy=POLICY)


def test_a_codes_digest_binds_it_to_the_citizen_and_the_mobile() -> None:
    subject = subject_handle(b"k", "0012345679")
    digest = code_digest(b"k", subject=subject, mobile="09121234567", code="123456")
    assert digest == code_digest(b"k", subject=subject, mobile="09121234567", code="123456")
    assert digest != code_digest(b"k", subject=subject, mobile="09351112233", code="123456")
    assert digest != code_digest(b"k", subject=subject_handle(b"k", "0012345687"), mobile="09121234567", code="123456")
    assert "0012345679" not in subject and "123456" not in digest
    assert subject != subject_handle(b"another key", "0012345679")


def test_a_session_lives_its_lifetime_and_not_past_a_sign_out_everywhere() -> None:
    session = open_session(
        session_id="s", national_id="0012345679", mobile="09121234567", subject="h", now=SENT, lifetime_s=3600
    )
    assert session_usable(session, now=SENT + 3599, not_before=None)
    assert not session_usable(session, now=SENT + 3600, not_before=None)
    assert not session_usable(session, now=SENT + 10, not_before=SENT + 5)  # signed out everywhere after it began
    assert session_usable(session, now=SENT + 10, not_before=SENT - 5)  # a sign-out everywhere before it began
    assert "0012345679" not in repr(session) and "09121234567" not in repr(session)


def test_the_active_key_is_the_one_named_or_the_only_one() -> None:
    assert active_kid(["a"], None) == "a"
    assert active_kid(["a", "b"], "b") == "b"
    for kids, wanted in ((["a", "b"], None), (["a"], "c"), (["a", "a"], "a")):
        with pytest.raises(ValueError):
            active_kid(kids, wanted)
