"""identity's signing keys: Ed25519 private keys from a JWKS file (one active, the others still published so
tokens they signed verify until they expire: rotation), or, in local and test runs only, a key made at start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from shared.sessions import SIGNING_ALGORITHM, public_key_set

from .domain import active_kid


class SigningKeysInvalid(ValueError):
    """The signing keys file cannot be used (unreadable, not Ed25519 private keys, no kid, no active key)."""


def new_private_jwk() -> dict[str, Any]:
    """A new Ed25519 private key as a JWK, its kid the key's RFC 7638 thumbprint (what an operator adds to the file)."""
    key = OKPKey.generate_key("Ed25519", parameters={"alg": SIGNING_ALGORITHM, "use": "sig"}, auto_kid=True)
    return dict(key.as_dict(private=True))


class SigningKeys:
    """The private keys identity signs with (the active one) and publishes (every one, public halves only)."""

    def __init__(self, keys: list[OKPKey], active: str | None) -> None:
        kids = [str(key.kid) for key in keys]
        self.active_kid = active_kid(kids, active)
        self._keys = {str(key.kid): key for key in keys}

    @classmethod
    def from_jwks(cls, jwks: list[dict[str, Any]], active: str | None) -> SigningKeys:
        """The keys of a private JWKS's `keys`; SigningKeysInvalid naming what is wrong (never the key)."""
        try:
            keys = [_private_key(entry) for entry in jwks]
        except (ValueError, KeyError, TypeError, JoseError) as error:
            raise SigningKeysInvalid(type(error).__name__) from None
        if not keys:
            raise SigningKeysInvalid("no keys")
        try:
            return cls(keys, active)
        except ValueError as error:
            raise SigningKeysInvalid(str(error)) from None

    @classmethod
    def from_file(cls, path: Path, active: str | None) -> SigningKeys:
        try:
            jwks = json.loads(path.read_text(encoding="utf-8"))["keys"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            # The error's type only: its text could quote key material.
            raise SigningKeysInvalid(f"{path}: {type(error).__name__}") from None
        try:
            return cls.from_jwks(jwks, active)
        except SigningKeysInvalid as error:
            raise SigningKeysInvalid(f"{path}: {error}") from None

    @classmethod
    def ephemeral(cls) -> SigningKeys:
        """One key made now: for local and test runs (settings refuse it elsewhere)."""
        return cls.from_jwks([new_private_jwk()], None)

    def sign(self, claims: dict[str, Any]) -> str:
        """A JWT of `claims`, signed by the active key and naming it in `kid`."""
        return jwt.encode(
            {"alg": SIGNING_ALGORITHM, "kid": self.active_kid},
            claims,
            self._keys[self.active_kid],
            algorithms=[SIGNING_ALGORITHM],
        )

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS identity publishes: each key's public half, with its kid, alg and use."""
        return {
            "keys": [
                {name: value for name, value in key.as_dict(private=False).items() if name != "d"}
                for key in self._keys.values()
            ]
        }

    def public_key_set(self) -> KeySet:
        return public_key_set(self.public_jwks())


def _private_key(entry: dict[str, Any]) -> OKPKey:
    if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        raise ValueError("an Ed25519 key (kty OKP, crv Ed25519) is expected")
    if not entry.get("kid") or not entry.get("d"):
        raise ValueError("each signing key needs its kid and its private part")
    key = OKPKey.import_key({**entry, "alg": SIGNING_ALGORITHM, "use": "sig"})
    if not key.is_private:
        raise ValueError("a private key is expected")
    return key
