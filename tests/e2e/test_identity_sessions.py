"""Sign-in and sessions through the running desk (sandbox registry and SMS gateway, notify, identity, tracking as
processes): the account takeover of issue 16 is refused, refresh tokens rotate and a reused one ends the
session, sign-out and sign-out everywhere are honoured by tracking, expired and foreign tokens are refused,
a token signed with a key still published verifies (rotation), and notify's code route refuses the public.

identity signs with a keys file written here (an old key still published and a new active one), so the test
can mint tokens of its own with them.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey

from sandbox.agencies import registered_mobile
from services.identity.adapters_keys import new_private_jwk
from shared.domain.digits import to_persian_digits
from shared.sessions import SIGNING_ALGORITHM, citizen_claims
from testkit.data import living_national_id, submission
from testkit.harness import NOTIFY_KEY, SERVICES, Stack
from testkit.identity import (
    ask_for_code,
    bearer,
    codes_texted_to,
    sign_in,
    texts_to,
    verify,
    wait_for_new_code,
)
from testkit.infra import Servers
from tests.problems import assert_problem

OLD_KEY, NEW_KEY = new_private_jwk(), new_private_jwk()


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The desk with identity's keys from a file (old and new, the new one active) and a 1 s resend cool-down, so
    one citizen can open several sessions in a test."""
    workdir = Path(tmp_path_factory.mktemp("identity-stack"))
    keys_file = workdir / "signing-keys.json"
    keys_file.write_text(json.dumps({"keys": [OLD_KEY, NEW_KEY]}), encoding="utf-8")
    running = Stack(
        servers,
        workdir,
        group_prefix="e2e-identity",
        extra_env={
            "IDENTITY_SIGNING_KEYS_FILE": str(keys_file),
            "IDENTITY_ACTIVE_KID": NEW_KEY["kid"],
            "IDENTITY_CODE_RESEND_AFTER_S": "1",
        },
    )
    try:
        running.start_groups_at_end()
        running.start_all()
        yield running
    finally:
        running.stop_all()


def history(stack: Stack, tokens: dict[str, Any]) -> httpx.Response:
    return httpx.get(stack.url("tracking") + "/api/v1/tracking/history", headers=bearer(tokens))


def refresh(stack: Stack, refresh_token: str) -> httpx.Response:
    return httpx.post(stack.url("identity") + "/api/v1/identity/token/refresh", json={"refresh_token": refresh_token})


def citizen() -> tuple[str, str]:
    nid = living_national_id()
    return nid, registered_mobile(nid)


def stranger_mobile(nid: str) -> str:
    while (mobile := f"0935{random.randrange(10**7):07d}") == registered_mobile(nid):
        pass
    return mobile


def mint(key: dict[str, Any], *, national_id: str, issued_at: float, lifetime_s: int) -> dict[str, str]:
    """A token signed by one of identity's keys, as identity would sign it."""
    claims = citizen_claims(
        national_id=national_id,
        mobile=registered_mobile(national_id),
        session_id=str(uuid.uuid4()),
        subject_handle="a" * 64,
        issued_at=issued_at,
        expires_at=int(issued_at) + lifetime_s,
        token_id=str(uuid.uuid4()),
    )
    header = {"alg": SIGNING_ALGORITHM, "kid": key["kid"]}
    return {"access_token": jwt.encode(header, claims, OKPKey.import_key(key), algorithms=[SIGNING_ALGORITHM])}


def test_sign_in_with_another_persons_national_id_texts_nothing_and_opens_nothing(stack: Stack) -> None:
    victim, victims_mobile = citizen()
    attacker = stranger_mobile(victim)
    taken = ask_for_code(stack, victim, attacker)
    genuine = ask_for_code(stack, to_persian_digits(victim), to_persian_digits(victims_mobile))
    assert taken.status_code == genuine.status_code == 202
    assert taken.json() == genuine.json() == {"expires_in_s": 120, "resend_after_s": 1}
    code = wait_for_new_code(stack, victims_mobile, after=0)
    time.sleep(1)  # notify had its chance to text the attacker too
    assert texts_to(stack, attacker) == []

    # Whatever the attacker types, even the victim's own code, it is the one 401.
    refusals = [verify(stack, victim, attacker, guess) for guess in ("000000", "123456", code)]
    bodies = {json.dumps(assert_problem(r, 401, slug="sign-in-refused"), sort_keys=True) for r in refusals}
    unknown = verify(stack, living_national_id(), attacker, "123456")
    assert bodies == {json.dumps(assert_problem(unknown, 401, slug="sign-in-refused"), sort_keys=True)}
    # The victim's code still opens the victim's session, typed in Persian digits, and only once.
    granted = verify(stack, victim, victims_mobile, to_persian_digits(code))
    assert granted.status_code == 200, granted.text
    assert granted.json()["token_type"] == "Bearer" and granted.json()["expires_in_s"] == 300
    assert victim not in granted.json()["refresh_token"]
    assert_problem(verify(stack, victim, victims_mobile, code), 401)
    # Nothing personal in any service's log: not the national ID nor either mobile (a 6-digit code could match a
    # timestamp's microseconds by chance, so it is not searched for; no log line is written with it).
    logs = "\n".join(stack.processes[name].log_path.read_text() for name in SERVICES)
    assert [secret for secret in (victim, victims_mobile, attacker) if secret in logs] == []


def test_a_refresh_rotates_and_a_reused_refresh_token_ends_the_session(stack: Stack) -> None:
    nid, mobile = citizen()
    first = sign_in(stack, nid, mobile)
    rotated = refresh(stack, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert history(stack, second).status_code == 200

    # The spent token again: someone else holds it. The whole session ends, the new tokens with it.
    assert_problem(refresh(stack, first["refresh_token"]), 401, slug="refresh-refused")
    assert_problem(history(stack, second), 401, slug="session-unauthenticated")
    assert_problem(refresh(stack, second["refresh_token"]), 401)
    assert_problem(refresh(stack, "never-issued"), 401)


def test_sign_out_ends_that_session_only(stack: Stack) -> None:
    nid, mobile = citizen()
    phone, laptop = sign_in(stack, nid, mobile), sign_in(stack, nid, mobile)
    signed_out = httpx.post(stack.url("identity") + "/api/v1/identity/sign-out", headers=bearer(phone))
    assert signed_out.status_code == 204
    assert_problem(history(stack, phone), 401)
    assert_problem(refresh(stack, phone["refresh_token"]), 401)
    assert history(stack, laptop).status_code == 200


def test_sign_out_everywhere_ends_every_session_and_a_new_sign_in_works(stack: Stack) -> None:
    nid, mobile = citizen()
    sessions = [sign_in(stack, nid, mobile) for _ in range(2)]
    done = httpx.post(stack.url("identity") + "/api/v1/identity/sign-out-everywhere", headers=bearer(sessions[1]))
    assert done.status_code == 204
    for tokens in sessions:
        assert_problem(history(stack, tokens), 401)
        assert_problem(refresh(stack, tokens["refresh_token"]), 401)
    assert history(stack, sign_in(stack, nid, mobile)).status_code == 200


def test_expired_foreign_and_rotated_out_tokens_are_refused_and_a_published_old_key_verifies(stack: Stack) -> None:
    nid = living_national_id()
    now = time.time()
    assert history(stack, mint(OLD_KEY, national_id=nid, issued_at=now, lifetime_s=300)).status_code == 200
    assert history(stack, mint(NEW_KEY, national_id=nid, issued_at=now, lifetime_s=300)).status_code == 200
    expired = mint(NEW_KEY, national_id=nid, issued_at=now - 400, lifetime_s=300)
    assert_problem(history(stack, expired), 401, slug="session-unauthenticated")
    foreign = {**new_private_jwk(), "kid": NEW_KEY["kid"]}  # a key identity never had, under a kid it has
    assert_problem(history(stack, mint(foreign, national_id=nid, issued_at=now, lifetime_s=300)), 401)
    assert_problem(history(stack, mint(new_private_jwk(), national_id=nid, issued_at=now, lifetime_s=300)), 401)


def test_the_registry_down_means_503_and_no_code(stack: Stack) -> None:
    nid, mobile = citizen()
    control = f"http://127.0.0.1:{stack.agencies_port}/control/faults"
    httpx.put(control + "/mobile-registry", json={"down": True}).raise_for_status()
    try:
        assert_problem(ask_for_code(stack, nid, mobile), 503, slug="sign-in-unavailable")
    finally:
        httpx.delete(control).raise_for_status()
    time.sleep(0.5)
    assert codes_texted_to(stack, mobile) == []
    assert history(stack, sign_in(stack, nid, mobile)).status_code == 200


def test_notifys_code_route_refuses_callers_without_the_internal_key(stack: Stack) -> None:
    mobile = registered_mobile(living_national_id())
    route = stack.url("notify") + "/internal/v1/sign-in-codes"
    for headers in ({}, {"X-Internal-Key": "guess"}):
        assert_problem(httpx.post(route, json={"mobile": mobile, "code": "123456"}, headers=headers), 401)
    assert texts_to(stack, mobile) == []
    assert httpx.post(route, json={"mobile": mobile, "code": "123456"}, headers=NOTIFY_KEY).status_code == 202


def test_a_citizen_signed_in_sees_their_own_submission_in_the_history(stack: Stack) -> None:
    body = submission()
    nid, mobile = body["applicant"]["national_id"], body["applicant"]["mobile"]
    code = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15).json()["tracking_code"]
    tokens = sign_in(stack, nid, mobile)
    deadline = time.monotonic() + 30
    while code not in history(stack, tokens).text:
        assert time.monotonic() < deadline, "the submission never reached the history"
        time.sleep(0.3)
