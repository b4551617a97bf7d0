"""Agency API keys: kept only as sha256 hashes, each naming its agency and the services it may act on."""

# Agency keys are high-entropy random tokens (at least 128 bits, e.g. `secrets.token_urlsafe(32)`), so a
# fast unsalted hash is the right choice: nobody can brute-force 2**128 candidates whatever the hash costs,
# and a slow password hash (argon2, bcrypt) would only burn CPU on every agency call. A leaked keys file
# still gives away no usable key. (The development keys in deploy/local are short and guessable, which is why
# settings refuse that file outside local and test runs.)

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

KeyHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class AgencyGrant(BaseModel):
    """What one key may do: act as `agency` on requests for the listed services."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agency: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    services: frozenset[str] = frozenset()


_FILE: TypeAdapter[dict[KeyHash, AgencyGrant]] = TypeAdapter(dict[KeyHash, AgencyGrant])


def hash_key(key: str) -> str:
    """The stored form of a key: its sha256, in hex."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class AgencyKeys:
    """Every agency key intake accepts, by hash."""

    grants: Mapping[str, AgencyGrant]

    @classmethod
    def load(cls, path: Path) -> AgencyKeys:
        """Read and validate a keys file (a YAML mapping of key hash → agency and services)."""
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls(_FILE.validate_python(data))

    def authenticate(self, presented: str | None) -> AgencyGrant | None:
        """The grant of a presented key, or None for a missing or unknown key."""
        if not presented:
            return None
        digest = hash_key(presented)
        found: AgencyGrant | None = None
        # Every stored hash is compared in constant time, with no early exit: how long this takes says nothing
        # about which stored hash came close.
        for stored, grant in self.grants.items():
            if hmac.compare_digest(stored, digest):
                found = grant
        return found
