"""identity's settings (prefix IDENTITY_); shared infrastructure comes from shared.settings (prefix KHEDMAT_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.rate_limits import parse_limits
from shared.settings import DEVELOPMENT_ENVIRONMENTS, DevelopmentSecret, ServiceSettings, SessionSettings

# notify's development default (NOTIFY_INTERNAL_KEY), so a local desk works out of the box.
DEV_NOTIFY_KEY = "dev-only-internal-key-change-me"


class IdentitySettings(ServiceSettings):
    """Where identity asks about mobiles and has codes texted, how long codes and sessions live, its keys."""

    model_config = SettingsConfigDict(env_prefix="IDENTITY_")

    port: int = 8085
    # The mobile registry (Shahkar-like): POST {registry_url}/mobile-registry/v1/ownership.
    registry_url: str = "http://127.0.0.1:8090"
    registry_timeout_s: float = Field(default=2.0, gt=0)
    registry_attempts: int = Field(default=2, ge=1, le=5)
    # Keys the digests of national IDs and codes in Redis (no key in Redis names a national ID).
    hash_key: DevelopmentSecret = SecretStr("dev-only-identity-hash-key-change-me")
    # notify texts the codes: its internal route and key (= NOTIFY_INTERNAL_KEY).
    notify_url: str = "http://127.0.0.1:8084"
    notify_key: DevelopmentSecret = SecretStr(DEV_NOTIFY_KEY)
    notify_timeout_s: float = Field(default=5.0, gt=0)
    # A private JWKS (JSON) of Ed25519 keys; the active one signs, every one is published (rotation). Without a
    # file, local and test runs sign with a key made at start (tokens die with the process).
    signing_keys_file: Path | None = None
    active_kid: str | None = None
    access_token_ttl_s: int = Field(default=300, ge=30, le=3600)
    session_lifetime_s: int = Field(default=30 * 24 * 3600, ge=600)
    code_ttl_s: int = Field(default=120, ge=30, le=900)
    code_resend_after_s: int = Field(default=60, ge=1, le=900)
    code_max_tries: int = Field(default=5, ge=1, le=10)
    # Budgets (limits' syntax): sign-ins per client address and per national ID, code checks per client address.
    sign_in_limit_per_client: str = "20/hour"
    sign_in_limit_per_national_id: str = "5/10minutes;20/day"
    verify_limit_per_client: str = "30/10minutes"
    sessions: SessionSettings = Field(default_factory=SessionSettings)

    @model_validator(mode="after")
    def _limits_readable(self) -> IdentitySettings:
        for limit in (self.sign_in_limit_per_client, self.sign_in_limit_per_national_id, self.verify_limit_per_client):
            parse_limits(limit)  # a typo fails at start, not at the first sign-in
        return self

    @model_validator(mode="after")
    def _signing_keys_named(self) -> IdentitySettings:
        if self.deployment.deployment_environment in DEVELOPMENT_ENVIRONMENTS:
            return self
        if self.signing_keys_file is None:
            # A key made at start differs per replica and dies with the process: fine on a laptop only.
            raise ValueError("IDENTITY_SIGNING_KEYS_FILE must name the signing keys outside local and test runs")
        return self
