"""The shared session verifier (shared/sessions.py) and identity's keys: signature, issuer, audience, expiry
with its leeway, the claims a citizen's session needs, and key rotation (a token signed with the old kid
verifies while that key is published, and not after it is removed). Revocation on real Redis is in
tests/integration/test_identity_redis.py; here Redis answers "nothing revoked"."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.identity.__main__ import main as identity_main
from services.identity.adapters_keys import SigningKeys, SigningKeysInvalid, new_private_jwk
from services.identity.settings import IdentitySettings
from shared.http import install_problem_handlers
from shared.sessions import (
    SESSION_VERIFIER_STATE,
    CitizenSession,
    CitizenSessionDep,
    IdentityJwks,
    SessionRefused,
    SessionsUnavailable,
    SessionVerifier,
    StaticKeys,
    citizen_claims,
)
from testkit.sessions import NothingRevoked

NOW = 1_800_000_000.0
NATIONAL_ID = "0012345679"
MOBILE = "09121234567"


def as_redis(stub: NothingRevoked) -> Any:
    """The stub where the verifier takes a Redis client (it only ever calls mget)."""
    return stub


def claims(**changes: Any) -> dict[str, Any]:
    base = citizen_claims(
        national_id=NATIONAL_ID,
        mobile=MOBILE,
        session_id=str(uuid.uuid4()),
        subject_handle="h" * 64,
        issued_at=NOW,
        expires_at=int(NOW) + 300,
        token_id=str(uuid.uuid4()),
    )
    return {**base, **changes}


def keys_of(*jwks: dict[str, Any], active: str | None = None) -> SigningKeys:
    return SigningKeys.from_jwks(list(jwks), active)


def verifier(keys: SigningKeys, *, now: float = NOW, redis: Any = None) -> SessionVerifier:
    return SessionVerifier(
        StaticKeys(keys.public_key_set()), as_redis(redis or NothingRevoked()), leeway_s=10, clock=lambda: now
    )


async def test_a_token_identity_signed_gives_the_citizens_session_after_one_revocation_read() -> None:
    keys = SigningKeys.ephemeral()
    redis = NothingRevoked()
    token_claims = claims()
    session = await verifier(keys, redis=redis).verify(keys.sign(token_claims))
    assert session == CitizenSession(NATIONAL_ID, MOBILE, token_claims["sid"], "citizen")
    assert redis.asked == [
        (f"khedmat:sessions:revoked:{token_claims['sid']}", f"khedmat:sessions:not-before:{'h' * 64}")
    ]
    assert NATIONAL_ID not in repr(session) and MOBILE not in repr(session)


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "someone-else"},
        {"aud": "another-desk"},
        {"knd": "operator"},
        {"exp": int(NOW) - 11},  # past the 10 s leeway
        {"iat": NOW + 60},  # issued in the future
        {"sid": 42},
        {"mob": ""},
    ],
)
async def test_a_token_with_the_wrong_claims_is_refused(changes: dict[str, Any]) -> None:
    keys = SigningKeys.ephemeral()
    with pytest.raises(SessionRefused):
        await verifier(keys).verify(keys.sign(claims(**changes)))


@pytest.mark.parametrize("missing", ["sub", "sid", "mob", "knd", "sdg", "exp", "iat", "jti"])
async def test_a_token_without_a_needed_claim_is_refused(missing: str) -> None:
    keys = SigningKeys.ephemeral()
    token_claims = claims()
    del token_claims[missing]
    with pytest.raises(SessionRefused):
        await verifier(keys).verify(keys.sign(token_claims))


async def test_expiry_allows_the_leeway_and_no_more() -> None:
    keys = SigningKeys.ephemeral()
    token = keys.sign(claims())
    assert await verifier(keys, now=NOW + 305).verify(token)
    with pytest.raises(SessionRefused):
        await verifier(keys, now=NOW + 311).verify(token)


def _flip_first_byte(segment: str) -> str:
    """The base64url segment with its first byte changed (replacing trailing characters could leave the decoded
    bytes as they were: the last character carries only a few bits)."""
    raw = bytearray(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    raw[0] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


@pytest.mark.parametrize("tamper", ["signature", "payload", "empty", "garbage", "too long", "alg none"])
async def test_altered_or_unsigned_tokens_are_refused(tamper: str) -> None:
    keys = SigningKeys.ephemeral()
    token = keys.sign(claims())
    header, payload, signature = token.split(".")
    forged = {
        "signature": f"{header}.{payload}.{_flip_first_byte(signature)}",
        "payload": f"{header}.{_flip_first_byte(payload)}.{signature}",
        "empty": "",
        "garbage": "not-a-token",
        "too long": token + "A" * 5000,
        "alg none": "eyJhbGciOiJub25lIn0." + payload + ".",
    }[tamper]
    with pytest.raises(SessionRefused):
        await verifier(keys).verify(forged)


async def test_a_token_signed_by_another_key_under_a_published_kid_is_refused() -> None:
    keys = SigningKeys.ephemeral()
    impostor = {**new_private_jwk(), "kid": keys.active_kid}
    with pytest.raises(SessionRefused):
        await verifier(keys).verify(keys_of(impostor).sign(claims()))


class Jwks:
    """identity's JWKS endpoint as a verifier sees it over HTTP, with the published keys changeable."""

    def __init__(self, keys: SigningKeys) -> None:
        self.document = keys.public_jwks()
        self.fetches = 0
        self.up = True

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if not self.up:
            return httpx.Response(503)
        return httpx.Response(200, json=self.document)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fetched(jwks: Jwks, clock: Clock) -> IdentityJwks:
    client = httpx.AsyncClient(transport=httpx.MockTransport(jwks.handler))
    return IdentityJwks("http://identity/.well-known/jwks.json", client=client, clock=clock, max_age_s=300)


async def test_rotation_an_old_kid_verifies_while_published_and_not_after_it_is_removed() -> None:
    old, new = new_private_jwk(), new_private_jwk()
    published = Jwks(keys_of(old, new, active=new["kid"]))
    clock = Clock()
    check = SessionVerifier(fetched(published, clock), as_redis(NothingRevoked()), clock=lambda: NOW)
    old_token = keys_of(old).sign(claims())
    assert await check.verify(old_token)
    assert await check.verify(keys_of(old, new, active=new["kid"]).sign(claims()))

    published.document = keys_of(new).public_jwks()  # the end of the rotation: the old key is withdrawn
    assert await check.verify(old_token)  # the cached copy still holds it, for at most its max age
    clock.now += 300
    with pytest.raises(SessionRefused):
        await check.verify(old_token)


async def test_an_unknown_kid_fetches_the_keys_again_at_most_once_per_30_seconds() -> None:
    first, added = new_private_jwk(), new_private_jwk()
    published = Jwks(keys_of(first))
    clock = Clock()
    check = SessionVerifier(fetched(published, clock), as_redis(NothingRevoked()), clock=lambda: NOW)
    assert await check.verify(keys_of(first).sign(claims()))
    published.document = keys_of(first, added, active=added["kid"]).public_jwks()
    clock.now += 30
    assert await check.verify(keys_of(added).sign(claims()))  # a newly published key is found at once
    assert published.fetches == 2
    stranger = keys_of(new_private_jwk()).sign(claims())
    for _ in range(20):  # forged kids do not become a flood of requests to identity
        with pytest.raises(SessionRefused):
            await check.verify(stranger)
    assert published.fetches == 2


async def test_with_no_keys_to_be_had_checks_fail_closed_and_keys_held_go_on_verifying() -> None:
    keys = SigningKeys.ephemeral()
    published = Jwks(keys)
    published.up = False
    clock = Clock()
    check = SessionVerifier(fetched(published, clock), as_redis(NothingRevoked()), clock=lambda: NOW)
    with pytest.raises(SessionsUnavailable):
        await check.verify(keys.sign(claims()))
    published.up = True
    clock.now += 1
    assert await check.verify(keys.sign(claims()))
    published.up = False
    clock.now += 400
    assert await check.verify(keys.sign(claims()))  # identity down: the keys already held still verify


def route_app(keys: SigningKeys) -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    setattr(app.state, SESSION_VERIFIER_STATE, verifier(keys))

    @app.get("/mine")
    async def mine(session: CitizenSessionDep) -> dict[str, str]:
        return {"session": session.session_id}

    return TestClient(app)


def test_the_route_dependency_answers_one_401_for_every_kind_of_bad_token() -> None:
    keys = SigningKeys.ephemeral()
    client = route_app(keys)
    good = keys.sign(claims())
    assert client.get("/mine", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    refusals = [
        client.get("/mine"),
        client.get("/mine", headers={"Authorization": f"Basic {good}"}),
        client.get("/mine", headers={"Authorization": "Bearer nonsense"}),
        client.get("/mine", headers={"Authorization": f"Bearer {keys.sign(claims(exp=1))}"}),
    ]
    for response in refusals:
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"
    assert len({json.dumps(response.json(), sort_keys=True) for response in refusals}) == 1
    assert "citizenSession" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_the_keys_file_rotates_and_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    old, new = new_private_jwk(), new_private_jwk()
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [old, new]}))
    keys = SigningKeys.from_file(path, new["kid"])
    assert keys.active_kid == new["kid"]
    assert {key["kid"] for key in keys.public_jwks()["keys"]} == {old["kid"], new["kid"]}
    assert all("d" not in key for key in keys.public_jwks()["keys"])
    document: dict[str, Any]
    for document in (
        {"keys": [old, new]},  # several keys and none named active
        {"keys": [{k: v for k, v in old.items() if k != "d"}]},  # a public key cannot sign
        {"keys": [{**old, "crv": "X25519"}]},
        {"keys": []},
    ):
        path.write_text(json.dumps(document))
        with pytest.raises(SigningKeysInvalid):
            SigningKeys.from_file(path, None)
    path.write_text("not json")
    with pytest.raises(SigningKeysInvalid) as refused:
        SigningKeys.from_file(path, None)
    assert old["d"] not in str(refused.value)


def test_outside_local_and_test_the_dev_secrets_and_a_key_made_at_start_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KHEDMAT_DEPLOYMENT_ENVIRONMENT", "production")
    for name, value in (
        ("IDENTITY_HASH_KEY", "a-real-hash-key"),
        ("IDENTITY_NOTIFY_KEY", "a-real-notify-key"),
        ("IDENTITY_SIGNING_KEYS_FILE", str(tmp_path / "keys.json")),
    ):
        with pytest.raises(ValidationError, match=name):
            IdentitySettings()
        monkeypatch.setenv(name, value)
    assert IdentitySettings().signing_keys_file == tmp_path / "keys.json"


def test_new_key_prints_a_private_ed25519_jwk(capsys: pytest.CaptureFixture[str]) -> None:
    assert identity_main(["new-key"]) == 0
    jwk = json.loads(capsys.readouterr().out)
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "Ed25519")
    assert jwk["kid"] and jwk["d"]
