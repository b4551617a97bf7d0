"""Citizens' sessions for in-process tests: identity's signing keys made here, a verifier that reads them
directly (no JWKS over HTTP) and a Redis where nothing was signed out. Real revocation on real Redis is
tested in tests/integration/test_identity_redis.py and tests/e2e/test_identity_sessions.py."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI

from services.identity.adapters_keys import SigningKeys
from shared.sessions import SESSION_VERIFIER_STATE, SessionVerifier, StaticKeys, citizen_claims


class NothingRevoked:
    """Redis as the verifier reads it when nothing was signed out (it only ever calls mget)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []

    async def mget(self, *names: str) -> list[None]:
        self.asked.append(names)
        return [None for _ in names]


def citizen_token(
    keys: SigningKeys, *, national_id: str, mobile: str, issued_at: float | None = None, ttl_s: int = 300
) -> str:
    """An access token as identity would sign it for this citizen."""
    now = time.time() if issued_at is None else issued_at
    claims = citizen_claims(
        national_id=national_id,
        mobile=mobile,
        session_id=str(uuid.uuid4()),
        subject_handle="h" * 64,
        issued_at=now,
        expires_at=int(now) + ttl_s,
        token_id=str(uuid.uuid4()),
    )
    return keys.sign(claims)


def trust_keys(app: FastAPI, keys: SigningKeys) -> None:
    """Make `app` verify sessions against `keys` (instead of fetching identity's JWKS), nothing revoked."""
    redis: Any = NothingRevoked()
    setattr(app.state, SESSION_VERIFIER_STATE, SessionVerifier(StaticKeys(keys.public_key_set()), redis))
