"""Signing a citizen in through a running stack, as a phone would: ask identity for a code, read it off the
sandbox SMS gateway, trade it for tokens."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from testkit.harness import Stack

SIGN_IN_CODE = re.compile(r"Khedmat sign-in code: ([0-9]{6})")


def texts_to(stack: Stack, mobile: str) -> list[str]:
    """Every SMS the sandbox gateway took for `mobile`, oldest first."""
    return [m["message"] for m in httpx.get(stack.sms_url + "/messages").json() if m["receptor"] == mobile]


def codes_texted_to(stack: Stack, mobile: str) -> list[str]:
    """The sign-in codes texted to `mobile`, oldest first."""
    return [found.group(1) for text in texts_to(stack, mobile) if (found := SIGN_IN_CODE.search(text))]


def ask_for_code(stack: Stack, national_id: str, mobile: str) -> httpx.Response:
    return httpx.post(
        stack.url("identity") + "/api/v1/identity/sign-in", json={"national_id": national_id, "mobile": mobile}
    )


def wait_for_new_code(stack: Stack, mobile: str, *, after: int, timeout_s: float = 10.0) -> str:
    """The first sign-in code texted to `mobile` beyond the first `after` ones."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        codes = codes_texted_to(stack, mobile)
        if len(codes) > after:
            return codes[after]
        time.sleep(0.1)
    raise AssertionError(f"no sign-in code texted within {timeout_s}s")


def verify(stack: Stack, national_id: str, mobile: str, code: str) -> httpx.Response:
    return httpx.post(
        stack.url("identity") + "/api/v1/identity/sign-in/verify",
        json={"national_id": national_id, "mobile": mobile, "code": code},
    )


def sign_in(stack: Stack, national_id: str, mobile: str) -> dict[str, Any]:
    """A new session's tokens for a citizen whose mobile the registry lists under their national ID."""
    before = len(codes_texted_to(stack, mobile))
    asked = ask_for_code(stack, national_id, mobile)
    assert asked.status_code == 202, asked.text
    granted = verify(stack, national_id, mobile, wait_for_new_code(stack, mobile, after=before))
    assert granted.status_code == 200, granted.text
    tokens: dict[str, Any] = granted.json()
    return tokens


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}
