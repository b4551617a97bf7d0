"""History tokens: signed, short-lived, naming a digest only; anything altered or late is refused."""

from __future__ import annotations

from services.tracking.service_history import HistoryTokens

SUBJECT = "d" * 64


def test_a_token_names_its_subject_until_it_expires() -> None:
    tokens = HistoryTokens(b"key", ttl_s=900)
    token = tokens.issue(SUBJECT, now=1_000_000)
    assert tokens.subject(token, now=1_000_000 + 899) == SUBJECT
    assert tokens.subject(token, now=1_000_000 + 901) is None


def test_an_altered_or_foreign_token_is_refused() -> None:
    tokens = HistoryTokens(b"key")
    token = tokens.issue(SUBJECT)
    payload, _, mac = token.partition(".")
    assert tokens.subject(payload[:-2] + "AA." + mac) is None
    assert tokens.subject(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert HistoryTokens(b"another key").subject(token) is None
    assert tokens.subject("") is None and tokens.subject("no-dot") is None


def test_a_token_holds_no_personal_data() -> None:
    token = HistoryTokens(b"key").issue(SUBJECT)
    assert "0012345679" not in token
